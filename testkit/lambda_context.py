"""Lambda's context object as handlers and Powertools read it, counting down from a timeout.

Stdlib only (``time``), so a benchmark's fresh interpreter can use it without paying for an import
the handler under measurement would otherwise pay for itself.
"""

from __future__ import annotations

import time


class LambdaContext:
    function_version = "$LATEST"

    def __init__(
        self,
        timeout_seconds: float = 60.0,
        *,
        function_name: str = "test-function",
        memory_limit_in_mb: int = 512,
        aws_request_id: str = "00000000-0000-4000-8000-000000000000",
    ) -> None:
        self.timeout_seconds = timeout_seconds
        self.function_name = function_name
        self.memory_limit_in_mb = memory_limit_in_mb
        self.aws_request_id = aws_request_id
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
        self._started = time.monotonic()

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_seconds - (time.monotonic() - self._started)) * 1000))
