"""Shared fixtures. AWS is moto only: fake credentials and a fixed region are set before anything
imports boto3, so no test can ever reach real AWS."""

from __future__ import annotations

import os

os.environ.update(
    AWS_DEFAULT_REGION="us-east-1",
    AWS_REGION="us-east-1",
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_SESSION_TOKEN="testing",
    POWERTOOLS_SERVICE_NAME="flinks-geft-test",
    POWERTOOLS_METRICS_NAMESPACE="FlinksGeftTest",
    AWS_ACCOUNT_ID_ENDPOINT_MODE="disabled",
)
for _variable in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
    os.environ.pop(_variable, None)

from collections.abc import Iterator  # noqa: E402
from typing import Any  # noqa: E402

import boto3  # noqa: E402
import pytest  # noqa: E402
from geft_local.moto_atomic import make_conditional_writes_atomic  # noqa: E402
from geft_local.template_resources import (  # noqa: E402
    CreatedResources,
    create_resources,
    load_template,
)
from moto import mock_aws  # noqa: E402

from tests.support.constants import TEST_FLINKS_CREDENTIALS, TEST_WEBHOOK_SECRET  # noqa: E402

make_conditional_writes_atomic()


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture
def aws() -> Iterator[Any]:
    with mock_aws():
        yield boto3.Session(region_name="us-east-1")


@pytest.fixture
def stack(aws: Any, template: dict[str, Any]) -> CreatedResources:
    """The template's table, queue and secrets, created in moto from template.yaml itself."""
    return create_resources(
        template,
        session=aws,
        secret_values={
            "WebhookSecret": {"current": TEST_WEBHOOK_SECRET},
            "FlinksApiSecret": dict(TEST_FLINKS_CREDENTIALS),
        },
    )
