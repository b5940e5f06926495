"""AWS on 127.0.0.1: moto in server mode, and boto3 sessions that talk to it and nothing else.

The server runs in this process (``ThreadedMotoServer``), so ``make_conditional_writes_atomic``
(testkit.aws) makes its DynamoDB conditional writes atomic for every client, the containers included.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

from testkit.aws import FAKE_AWS_ENVIRONMENT
from testkit.template import REGION


class MotoServer:
    """moto's HTTP server on a free loopback port; ``stop()`` also closes its socket."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        from moto.server import ThreadedMotoServer  # noqa: PLC0415 - heavy; only the local stack needs it

        # werkzeug would print one line per request (the pump alone polls four times a second).
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
        self._started = False

    def start(self) -> None:
        self._server.start()
        self._started = True

    @property
    def port(self) -> int:
        return int(self._server.get_host_and_port()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        self._server.stop()
        inner = getattr(self._server, "_server", None)  # ThreadedMotoServer.stop() leaves it bound
        if inner is not None:
            with contextlib.suppress(OSError):
                inner.server_close()

    def environment(self) -> dict[str, str]:
        """What a process needs to reach this server through boto3, and only this server."""
        return {"AWS_ENDPOINT_URL": self.url, **FAKE_AWS_ENVIRONMENT}


class EndpointSession:
    """A boto3 Session whose every client goes to ``endpoint_url`` with fake credentials.

    Quacks like ``boto3.Session`` for ``client()``/``resource()``, which is all
    ``testkit.template.create_resources`` and ``streams.streams_client`` use.
    """

    def __init__(self, endpoint_url: str, region: str = REGION) -> None:
        import boto3  # noqa: PLC0415
        import botocore.session  # noqa: PLC0415

        self.endpoint_url = endpoint_url
        # Ignore AWS_PROFILE: make's TEST_ENV sets it empty, and a developer's profile must not apply.
        core = botocore.session.Session(session_vars={"profile": (None, None, None, None)})
        self._session = boto3.Session(
            botocore_session=core,
            aws_access_key_id=FAKE_AWS_ENVIRONMENT["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_AWS_ENVIRONMENT["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=FAKE_AWS_ENVIRONMENT["AWS_SESSION_TOKEN"],
            region_name=region,
        )

    # Untyped on purpose: the local stack and the tests reach a dozen services through these two doors by
    # a name known only at runtime, which the stubs' per-service overloads cannot type (product code gets
    # its typed clients from geft.aws).
    def client(self, service_name: str, **kwargs: Any) -> Any:
        kwargs.setdefault("endpoint_url", self.endpoint_url)
        create: Callable[..., Any] = self._session.client
        return create(service_name, **kwargs)

    def resource(self, service_name: str, **kwargs: Any) -> Any:
        kwargs.setdefault("endpoint_url", self.endpoint_url)
        create: Callable[..., Any] = self._session.resource
        return create(service_name, **kwargs)
