"""Shared fixtures. AWS is moto only: fake credentials and a fixed region are set before anything
imports boto3, so no test can ever reach real AWS."""

from __future__ import annotations

import os

from testkit.aws import make_conditional_writes_atomic, use_fake_aws

use_fake_aws()
os.environ.update(POWERTOOLS_SERVICE_NAME="flinks-geft-test", POWERTOOLS_METRICS_NAMESPACE="FlinksGeftTest")

from typing import Any  # noqa: E402

import boto3  # noqa: E402
import pytest  # noqa: E402

from testkit.template import load_template  # noqa: E402

make_conditional_writes_atomic()


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="session")
def _boto3_session() -> Any:
    """One session for every test's own clients: its loader keeps the service models it has read."""
    return boto3.Session(region_name="us-east-1")
