"""The one place logging and metrics are configured (Powertools, EMF to stdout).

Service name and metrics namespace come from POWERTOOLS_* variables set in the template's Globals.
Log keyword fields, never f-strings; never log secrets, signatures, tokens, raw bodies or accounts.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

logger = Logger(utc=True)
metrics = Metrics()

__all__ = ["MetricUnit", "logger", "metrics"]
