"""What botocore spends on making clients, spent once per test run instead of once per test.

Each function's composition root makes a new botocore session, as a Lambda container does; a new
session reads every service model from disk again (~50 ms a client on this machine, three to five
clients a test). ``service_models_shared`` gives every session one data loader, so a new session still
makes new clients (with the hooks ``testkit.aws.aws_calls_recorded`` installs) from models parsed once.
``ClientsMadeOnce`` is the tests' own boto3 session with each plain client made once: a botocore
client is safe to share and keeps no state of a test's.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import botocore.loaders
import botocore.session


@contextmanager
def service_models_shared() -> Iterator[None]:
    """Until exit, every new botocore session (boto3's too) reads service models through one loader."""
    loader = botocore.loaders.create_loader()
    original = botocore.session.get_session

    def session_with_the_shared_loader(env_vars: Any = None) -> botocore.session.Session:
        session = original(env_vars)
        session.register_component("data_loader", loader)
        return session

    botocore.session.get_session = session_with_the_shared_loader
    try:
        yield
    finally:
        botocore.session.get_session = original


class ClientsMadeOnce:
    """``client(service, region_name=...)`` as boto3's, made once per service and region; a client
    with other arguments (a ``config``) is made anew each time."""

    def __init__(self, session: boto3.Session) -> None:
        self._session = session
        self._clients: dict[tuple[str, str | None], Any] = {}
        self._lock = threading.Lock()

    def client(self, service_name: str, region_name: str | None = None, **kwargs: Any) -> Any:
        if kwargs:
            return self._session.client(service_name, region_name=region_name, **kwargs)  # type: ignore[call-overload]
        key = (service_name, region_name)
        with self._lock:
            if key not in self._clients:
                self._clients[key] = self._session.client(service_name, region_name=region_name)  # type: ignore[call-overload]
            return self._clients[key]
