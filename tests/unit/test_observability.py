"""The AWS SDK's and HTTP libraries' loggers stay at WARNING whatever level the function runs at.

In a fresh interpreter, as a Lambda cold start is: POWERTOOLS_LOG_LEVEL=DEBUG and a root logger at
DEBUG (Lambda's ApplicationLogLevel) before anything is imported; importing geft.observability (which
every handler does first) must still leave botocore & co. unable to emit a debug record.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROBE = """
import json, logging
logging.basicConfig(level=logging.DEBUG)
from geft.observability import PINNED_LIBRARY_LOGGERS, logger
import boto3, botocore.endpoint, requests, urllib3  # noqa: F401 - their loggers exist once imported
names = [*PINNED_LIBRARY_LOGGERS, "botocore.endpoint", "botocore.parsers", "urllib3.connectionpool"]
print(json.dumps({
    "function": logger.log_level,
    "libraries": {name: logging.getLogger(name).getEffectiveLevel() for name in names},
}))
"""


def test_library_loggers_are_pinned_at_warning_when_the_function_logs_at_debug() -> None:
    # GIVEN a fresh interpreter told to log at DEBUG
    environment = {
        **os.environ,
        "POWERTOOLS_LOG_LEVEL": "DEBUG",
        "PYTHONPATH": str(REPO / "layers" / "shared"),
    }

    # WHEN it imports the observability module
    completed = subprocess.run(
        [sys.executable, "-c", PROBE],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    # THEN our logger is at DEBUG and every SDK/HTTP logger (and its children) at WARNING
    assert completed.returncode == 0, completed.stderr
    levels = json.loads(completed.stdout.strip().splitlines()[-1])
    assert levels["function"] == 10
    assert set(levels["libraries"].values()) == {30}
    assert set(levels["libraries"]) >= {"botocore", "boto3", "urllib3", "requests", "s3transfer"}
