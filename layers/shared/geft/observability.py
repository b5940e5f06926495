"""The one place logging and metrics are configured (Powertools, EMF to stdout).

Service name and metrics namespace come from POWERTOOLS_* variables set in the template's Globals.
Log keyword fields, never f-strings; never log secrets, signatures, tokens, raw bodies or accounts.

The AWS SDK and HTTP libraries' loggers are pinned at WARNING here, at import, whatever the
function's level: at DEBUG botocore logs whole API responses (a ``GetSecretValue``'s SecretString)
and urllib3/requests log every request line. Raising POWERTOOLS_LOG_LEVEL (or Lambda's
ApplicationLogLevel, which sets the root logger) to debug our code must never print a secret.
"""

from __future__ import annotations

import logging
from typing import Final

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

PINNED_LIBRARY_LOGGERS: Final = ("botocore", "boto3", "urllib3", "requests", "s3transfer")


def pin_library_loggers() -> None:
    """Keep the SDK and HTTP libraries at WARNING (their child loggers inherit it)."""
    for name in PINNED_LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


pin_library_loggers()
logger = Logger(utc=True)
metrics = Metrics()

__all__ = ["PINNED_LIBRARY_LOGGERS", "MetricUnit", "logger", "metrics", "pin_library_loggers"]
