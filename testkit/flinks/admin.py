"""The sandbox's admin API from another process: register sessions, end them, read the journal."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Mapping
from typing import Any

from testkit.flinks.sandbox import JournalEntry


class SandboxAdmin:
    """What tests, benchmarks and the local stack's tools ask of a sandbox that runs elsewhere."""

    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        if not base_url.startswith("http://127.0.0.1"):
            raise ValueError(f"the sandbox is local: refusing {base_url}")
        self.base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only

    def call(self, method: str, path: str, document: object = None) -> Any:
        data = json.dumps(document).encode() if document is not None else None
        request = urllib.request.Request(  # noqa: S310 - a loopback http:// URL, checked above
            self.base_url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with self._opener.open(request, timeout=self._timeout) as response:
            return json.loads(response.read())

    def add_session(self, scenario: Mapping[str, Any] | None = None) -> str:
        """A session in a scenario (admin-API JSON: field names, optional ``preset``); its id."""
        return str(self.call("POST", "/_sandbox/sessions", dict(scenario or {}))["sessionId"])

    def session(self, session_id: str) -> dict[str, Any]:
        """The session's state: referenceId, status, offers, confirms, calls (the admin API's GET)."""
        state: dict[str, Any] = self.call("GET", f"/_sandbox/sessions/{session_id}")
        return state

    def set_status(self, session_id: str, status: str, details: str | None) -> None:
        document = {"status": status, "statusDetails": details}
        self.call("POST", f"/_sandbox/sessions/{session_id}/status", document)

    def add_faults(self, session_id: str, plan: Mapping[str, list[str]]) -> None:
        self.call("POST", f"/_sandbox/sessions/{session_id}/faults", dict(plan))

    def clear_faults(self, session_id: str) -> None:
        """Flinks has recovered: the session's planned faults are forgotten."""
        self.call("DELETE", f"/_sandbox/sessions/{session_id}/faults")

    def calls(self) -> list[JournalEntry]:
        return [JournalEntry(**entry) for entry in self.call("GET", "/_sandbox/calls")["calls"]]

    @property
    def authorize_count(self) -> int:
        return sum(1 for entry in self.calls() if entry.endpoint == "authorize")
