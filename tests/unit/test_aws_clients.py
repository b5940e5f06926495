"""The one client factory (geft.aws): one botocore session, each client made once, safe under threads,
and a client that cannot be made fails as the adapter's own error. No network: creating a botocore
client sends nothing."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from geft.aws import AwsClients
from geft.errors import PersistenceError, SecretError
from geft.models import Actor, GuaranteeRef
from geft.repository import DYNAMODB_CLIENT_CONFIG, GuaranteeRepository
from geft.secrets import JsonSecret

from tests.support.fresh_interpreter import REPO, run_probe

WORKERS = 16


@pytest.fixture
def counted_sessions(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Counts the botocore sessions made and the clients each service got; client creation is slowed
    so that threads racing for a cold client really overlap."""
    made: Counter[str] = Counter()
    real_get_session = botocore.session.get_session

    def slow_creation(class_attributes: Any, base_classes: Any, event_name: str, **_: Any) -> None:
        made["client:" + event_name.rsplit(".", 1)[-1]] += 1
        time.sleep(0.05)

    def get_session(*args: Any, **kwargs: Any) -> botocore.session.Session:
        made["session"] += 1
        session = real_get_session(*args, **kwargs)
        session.register("creating-client-class", slow_creation)
        return session

    monkeypatch.setattr(botocore.session, "get_session", get_session)
    return made


def test_threads_that_reach_cold_clients_at_once_share_one_session_and_one_client_each(
    counted_sessions: Counter[str],
) -> None:
    # GIVEN a cold factory and the processor's worker threads, released at the same moment
    aws = AwsClients()
    start = threading.Barrier(WORKERS)
    got: list[object] = [None] * WORKERS

    def worker(index: int) -> None:
        start.wait()
        got[index] = aws.dynamodb() if index % 2 == 0 else aws.secretsmanager()

    # WHEN each asks for its client
    threads = [threading.Thread(target=worker, args=(index,)) for index in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # THEN one session made one client per service, and every thread got that client
    assert counted_sessions == {"session": 1, "client:dynamodb": 1, "client:secrets-manager": 1}
    assert len({id(client) for client in got[0::2]}) == 1
    assert len({id(client) for client in got[1::2]}) == 1
    assert got[0] is aws.dynamodb()
    assert got[1] is aws.secretsmanager()


def test_each_service_gets_its_own_settings_and_the_others_keep_botocores() -> None:
    # GIVEN the table's fail-fast settings for DynamoDB only
    aws = AwsClients({"dynamodb": DYNAMODB_CLIENT_CONFIG})

    # WHEN both clients are made
    dynamodb, secretsmanager = aws.dynamodb(), aws.secretsmanager()

    # THEN DynamoDB connects in 1 s, reads in 2 s and retries 3 times (botocore's max_attempts counts
    # retries: 4 attempts in all); Secrets Manager keeps botocore's defaults
    assert (dynamodb.meta.config.connect_timeout, dynamodb.meta.config.read_timeout) == (1, 2)
    assert dynamodb.meta.config.retries == {"mode": "standard", "total_max_attempts": 4}
    assert (secretsmanager.meta.config.connect_timeout, secretsmanager.meta.config.read_timeout) == (60, 60)
    assert dynamodb.meta.service_model.service_name == "dynamodb"


@pytest.fixture
def no_region(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An environment in which no client can be made: botocore finds no region anywhere."""
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))


@pytest.mark.usefixtures("no_region")
def test_a_table_client_that_cannot_be_made_is_a_persistence_error_and_is_tried_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a repository on a cold factory, in an environment without a region
    aws = AwsClients({"dynamodb": DYNAMODB_CLIENT_CONFIG})
    repository = GuaranteeRepository("table", retention_days=1, actor=Actor("test"), client=aws)

    # WHEN it is first used, THEN making the client fails inside the adapter's error mapping
    with pytest.raises(PersistenceError, match="DynamoDB get_item failed: NoRegionError"):
        repository.get_guarantee(GuaranteeRef("0b6e6a4e-5b8e-4c1e-9f1e-3f0c2d1a9b7c", "g"))

    # AND the failure is not kept: once a region is known, the same factory makes the client
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ca-central-1")
    assert aws.dynamodb().meta.region_name == "ca-central-1"


@pytest.mark.usefixtures("no_region")
def test_a_secrets_client_that_cannot_be_made_is_a_secret_error() -> None:
    # GIVEN a secret on a cold factory, in an environment without a region
    secret = JsonSecret("webhook-secret", max_age_seconds=300, client=AwsClients())

    # WHEN it is first read, THEN making the client fails as the secret's own error
    with pytest.raises(SecretError, match="secret webhook-secret could not be read"):
        secret.get()


def test_the_stubs_are_never_imported_at_runtime() -> None:
    # GIVEN / WHEN a fresh interpreter imports every handler and makes every client the factory types
    probe = """
import json, sys
import audit_trail.handler, decision_processor.handler, deploy_hooks.pre_traffic
import scheduled_jobs.reconciler, scheduled_jobs.review_timeout, scheduled_jobs.sweeper
import webhook_receiver.handler
from geft.aws import AwsClients
aws = AwsClients()
for make in (aws.dynamodb, aws.secretsmanager, aws.sns, aws.lambda_, aws.codedeploy):
    make()
print(json.dumps(sorted(name for name in sys.modules if name.startswith("mypy_boto3"))))
"""
    functions = ["webhook_receiver", "decision_processor", "scheduled_jobs", "audit_trail", "deploy_hooks"]
    paths = [REPO / "functions" / name for name in functions] + [REPO / "layers" / "shared"]
    loaded = run_probe(probe, paths=paths, environment={"AWS_DEFAULT_REGION": "us-east-1"})

    # THEN no stub package was loaded: importable here (the dev virtualenv), absent from the functions' zips
    assert loaded == []
