"""The receiver's cold start stays lean: importing its handler must not load the processor's stack.

A regression guard, not a timing: ``requests``, ``pydantic`` and ``geft.flinks_client`` cost the
receiver's cold start 100-200 ms (docs/performance.md) and it needs none of them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FORBIDDEN = ("requests", "pydantic", "geft.flinks_client")
PROBE = f"""
import json, sys
import webhook_receiver.handler
print(json.dumps({{name: name in sys.modules for name in {FORBIDDEN!r}}}))
"""


def test_importing_the_receiver_handler_loads_neither_requests_nor_pydantic_nor_the_flinks_client() -> None:
    # GIVEN a fresh interpreter with only the receiver's Lambda paths (its CodeUri and the layer)
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(REPO / "functions" / "webhook_receiver"), str(REPO / "layers" / "shared")]
        ),
    }

    # WHEN it imports the handler
    completed = subprocess.run(
        [sys.executable, "-c", PROBE],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    # THEN none of the processor's heavy modules was loaded
    assert completed.returncode == 0, completed.stderr
    loaded = json.loads(completed.stdout.strip().splitlines()[-1])
    assert loaded == dict.fromkeys(FORBIDDEN, False)
