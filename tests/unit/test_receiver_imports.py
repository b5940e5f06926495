"""The receiver's cold start stays lean: importing its handler must not load the processor's stack.

A regression guard, not a timing: ``requests``, ``pydantic`` and ``geft.flinks_client`` cost the
receiver's cold start 100-200 ms (docs/performance.md) and it needs none of them.
"""

from __future__ import annotations

from tests.support.fresh_interpreter import REPO, run_probe

FORBIDDEN = ("requests", "pydantic", "geft.flinks_client")
PROBE = f"""
import json, sys
import webhook_receiver.handler
print(json.dumps({{name: name in sys.modules for name in {FORBIDDEN!r}}}))
"""


def test_importing_the_receiver_handler_loads_neither_requests_nor_pydantic_nor_the_flinks_client() -> None:
    # GIVEN / WHEN a fresh interpreter with only the receiver's Lambda paths (its CodeUri and the
    # layer) imports the handler
    loaded = run_probe(PROBE, paths=[REPO / "functions" / "webhook_receiver", REPO / "layers" / "shared"])

    # THEN none of the processor's heavy modules was loaded
    assert loaded == dict.fromkeys(FORBIDDEN, False)
