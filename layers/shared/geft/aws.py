"""Every AWS client a function uses, from one factory: one botocore session per container, each client
created once, on first use.

botocore rather than boto3: the functions need only low-level clients, and boto3's import (s3transfer,
the resource layer) and its per-client setup cost ~40 ms of a cold start; one session lets the second
client reuse the endpoint and partition data the first one loaded (docs/performance.md).

Thread-safe: the processor's worker threads reach a cold client at the same moment, and a botocore
session is not safe to create clients from concurrently; one thread creates, the others wait for it and
get the same client (a botocore client is safe to share once made).

Adapters take the factory (or a ready client) and ask it for their client inside their own error
mapping, so a client that cannot be created (no region, a bad endpoint) fails as that adapter's error.
The client types are the boto3 stubs' (a dev dependency: imported for mypy only, never at runtime).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

if TYPE_CHECKING:
    from botocore.client import BaseClient
    from botocore.session import Session
    from mypy_boto3_codedeploy import CodeDeployClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sns import SNSClient

# botocore ``Config`` keyword arguments, per service name.
ClientSettings = Mapping[str, Any]

_C = TypeVar("_C")


class AwsClients:
    """The container's AWS clients. ``settings`` gives a service's botocore ``Config`` (timeouts,
    retries); a service without settings gets botocore's defaults."""

    def __init__(self, settings: Mapping[str, ClientSettings] | None = None) -> None:
        self._settings = dict(settings or {})
        self._session: Session | None = None
        self._clients: dict[str, BaseClient] = {}
        self._lock = threading.Lock()

    def dynamodb(self) -> DynamoDBClient:
        return cast("DynamoDBClient", self._client("dynamodb"))

    def secretsmanager(self) -> SecretsManagerClient:
        return cast("SecretsManagerClient", self._client("secretsmanager"))

    def sns(self) -> SNSClient:
        return cast("SNSClient", self._client("sns"))

    def lambda_(self) -> LambdaClient:
        return cast("LambdaClient", self._client("lambda"))

    def codedeploy(self) -> CodeDeployClient:
        return cast("CodeDeployClient", self._client("codedeploy"))

    def _client(self, service: str) -> BaseClient:
        client = self._clients.get(service)  # made already: no lock on the warm path
        if client is None:
            with self._lock:
                client = self._clients.get(service)
                if client is None:
                    client = self._create(service)  # a failure is raised, not kept: the next call retries
                    self._clients[service] = client
        return client

    def _create(self, service: str) -> BaseClient:
        import botocore.session  # noqa: PLC0415 - cold start: loaded by the first call that needs AWS
        from botocore.config import Config  # noqa: PLC0415

        if self._session is None:
            self._session = botocore.session.get_session()
        settings = self._settings.get(service)
        return self._session.create_client(service, config=Config(**settings) if settings else None)


def provider(client: _C | AwsClients, pick: Callable[[AwsClients], _C]) -> Callable[[], _C]:
    """What an adapter calls for its client: ``pick`` of the factory (``AwsClients.dynamodb``, ...), so
    the client is made on first use, or a ready client as it is."""
    if isinstance(client, AwsClients):
        return functools.partial(pick, client)
    return lambda: client
