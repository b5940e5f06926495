"""Shared fixtures. AWS is moto only: fake credentials and a fixed region are set before anything
imports boto3, so no test can ever reach real AWS."""

from __future__ import annotations

import os

from testkit.aws import make_conditional_writes_atomic, use_fake_aws

use_fake_aws()
os.environ.update(POWERTOOLS_SERVICE_NAME="flinks-geft-test", POWERTOOLS_METRICS_NAMESPACE="FlinksGeftTest")

from collections.abc import Iterator  # noqa: E402
from typing import Any  # noqa: E402

import boto3  # noqa: E402
import pytest  # noqa: E402

from testkit.template import load_template  # noqa: E402
from tests.support.aws_clients import ClientsMadeOnce, service_models_shared  # noqa: E402

make_conditional_writes_atomic()


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="session", autouse=True)
def _service_models_read_once() -> Iterator[None]:
    with service_models_shared():
        yield


@pytest.fixture(scope="session")
def _boto3_session(_service_models_read_once: None) -> Any:
    """One session for every test's own clients, each client made once."""
    return ClientsMadeOnce(boto3.Session(region_name="us-east-1"))
