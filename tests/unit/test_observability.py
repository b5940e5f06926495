"""The AWS SDK's and HTTP libraries' loggers stay at WARNING whatever level the function runs at.

In a fresh interpreter, as a Lambda cold start is: POWERTOOLS_LOG_LEVEL=DEBUG and a root logger at
DEBUG (Lambda's ApplicationLogLevel) before anything is imported; importing geft.observability (which
every handler does first) must still leave botocore & co. unable to emit a debug record.
"""

from __future__ import annotations

from tests.support.fresh_interpreter import REPO, run_probe

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
    # GIVEN / WHEN a fresh interpreter told to log at DEBUG imports the observability module
    levels = run_probe(
        PROBE, paths=[REPO / "layers" / "shared"], environment={"POWERTOOLS_LOG_LEVEL": "DEBUG"}
    )

    # THEN our logger is at DEBUG and every SDK/HTTP logger (and its children) at WARNING
    assert levels["function"] == 10
    assert set(levels["libraries"].values()) == {30}
    assert set(levels["libraries"]) >= {"botocore", "boto3", "urllib3", "requests", "s3transfer"}
