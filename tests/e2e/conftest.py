"""The local stack (the same ``LocalStack`` that ``make local`` runs) on free loopback ports.

Module-scoped: one stack per test module, stopped before the next module starts, so it never overlaps
the in-process ``mock_aws`` tests (moto's backends are process-wide).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from geft_local.config import LocalConfig
from geft_local.console import Console
from geft_local.stack import LocalStack

from tests.support.constants import TEST_FLINKS_CREDENTIALS, TEST_WEBHOOK_SECRET

StartStack = Callable[..., LocalStack]


@pytest.fixture(scope="module")
def start_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartStack]:
    """Starts local stacks for the module and stops them all at its end."""
    with ExitStack() as stops:

        def start(name: str, *, compressed_time: bool = False, **parameters: str) -> LocalStack:
            """``compressed_time``: allow parameters below CloudFormation's minimums (a 1 s review
            timeout)."""
            run_dir: Path = tmp_path_factory.mktemp(name)
            config = LocalConfig(
                port=0,
                sandbox_port=0,
                webhook_secret=TEST_WEBHOOK_SECRET,
                flinks_username=TEST_FLINKS_CREDENTIALS["username"],
                flinks_password=TEST_FLINKS_CREDENTIALS["password"],
                parameter_overrides=parameters,
                run_dir=run_dir,
                stack_name=f"geft-e2e-{name}",
                check_parameter_constraints=not compressed_time,
            )
            stack = LocalStack(config, console=Console(stream=None))
            stops.callback(stack.stop)
            return stack.start()

        yield start


@pytest.fixture(scope="module")
def stack(start_stack: StartStack) -> LocalStack:
    return start_stack("pipeline")
