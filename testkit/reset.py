"""moto's whole state saved once and put back before each test: the template is deployed once per test
run, and every test still starts from exactly that deployment.

moto keeps each service's state in a ``BackendDict`` (account → region → backend object) and lists the
services in use in ``BackendDict._instances``. ``MotoSnapshot.take`` deep-copies every backend in use;
``restore`` puts a fresh copy of each back and resets every service, account or region the snapshot
did not have. So whatever a test did (items, stream records, messages, a deleted table, a rotated or
deleted secret, a CloudFormation stack, a Lambda function) is gone, by construction rather than by a
list of things to undo. Deploying from the template costs ~0.2 s a test here; a restore ~1 ms.

Call both under one active ``mock_aws`` (it resets everything when its last user stops).
"""

from __future__ import annotations

import copy
import copyreg
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from testkit.aws import _moto_lock

# What cannot be copied, and what a copy gets instead: a new, unheld one (moto's SQS queues hold a
# Condition; a copied Condition would still call the old lock's methods).
_FRESH: dict[type, Any] = {
    type(threading.Lock()): threading.Lock,
    type(threading.RLock()): threading.RLock,
    threading.Condition: threading.Condition,
}


@contextmanager
def _locks_copied_as_new() -> Iterator[None]:
    saved = {kind: copyreg.dispatch_table.get(kind) for kind in _FRESH}
    for kind, make in _FRESH.items():
        copyreg.dispatch_table[kind] = _made_anew_by(make)
    try:
        yield
    finally:
        for kind, reducer in saved.items():
            if reducer is None:
                copyreg.dispatch_table.pop(kind, None)
            else:
                copyreg.dispatch_table[kind] = reducer


def _made_anew_by(make: Any) -> Any:
    def reduce(_: object) -> tuple[Any, tuple[()]]:
        return make, ()

    return reduce


# service BackendDict -> account id -> region -> backend
_State = dict[Any, dict[str, dict[str, Any]]]


@dataclass(frozen=True)
class MotoSnapshot:
    _state: _State

    @classmethod
    def take(cls) -> MotoSnapshot:
        from moto.core.base_backend import BackendDict, backend_lock  # noqa: PLC0415

        with backend_lock, _moto_lock, _locks_copied_as_new():  # no DynamoDB call half-way through
            state = {
                service: {
                    account: {region: copy.deepcopy(backend) for region, backend in regions.items()}
                    for account, regions in service.items()
                }
                for service in BackendDict._instances  # type: ignore[misc]
            }
        return cls(state)

    def restore(self) -> None:
        """Every service back to its saved state; a service the snapshot did not use, to nothing."""
        from moto.core.base_backend import BackendDict, backend_lock  # noqa: PLC0415

        with backend_lock, _moto_lock, _locks_copied_as_new():  # no DynamoDB call half-way through
            for service in list(BackendDict._instances):  # type: ignore[misc]
                if service not in self._state:
                    _drop(service, list(service))
                    BackendDict._instances.remove(service)  # type: ignore[misc]
            for service, accounts in self._state.items():
                _drop(service, [account for account in service if account not in accounts])
                for account, regions in accounts.items():
                    in_account = service[account]  # (re)creates the account and lists the service in use
                    for region in [region for region in in_account if region not in regions]:
                        in_account[region].reset()
                        dict.__delitem__(in_account, region)
                    for region, backend in regions.items():
                        dict.__setitem__(in_account, region, copy.deepcopy(backend))


def _drop(service: Any, accounts: list[str]) -> None:
    for account in accounts:
        service[account].reset()
        dict.__delitem__(service, account)
