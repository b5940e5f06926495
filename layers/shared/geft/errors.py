"""One error hierarchy for the whole service.

Adapters translate outside failures (botocore, requests) into these by error code, never by message
text; handlers map them to HTTP statuses or stream outcomes in exactly one place each.
"""

from __future__ import annotations


class GeftError(Exception):
    """Base of every error this service raises on purpose."""


class ConfigError(GeftError):
    """Configuration is missing or invalid; the function cannot start."""


class PolicyError(ConfigError):
    """The decision policy document is invalid; the message names the rule at fault."""


class SecretError(GeftError):
    """A secret could not be read or does not have the documented JSON shape."""


class PersistenceError(GeftError):
    """DynamoDB failed in a way a retry may fix (throttling, 5xx, network)."""


class FlinksError(GeftError):
    """A call to the Flinks API failed."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class FlinksTransientError(FlinksError):
    """Worth retrying later: connection errors, timeouts, 429, 5xx, retries exhausted in the call."""


class FlinksConfirmOutcomeUnknownError(FlinksTransientError):
    """A confirm may have reached Flinks (timeout, dropped connection, 500/502/504): never re-sent blindly."""


class FlinksProtocolError(FlinksTransientError):
    """Flinks answered 2xx with a body we cannot read (not JSON, wrong shape)."""


class FlinksPermanentError(FlinksError):
    """Retrying cannot help: 400, 404, other 4xx (after one re-authorization on 401)."""


class FlinksConflictError(FlinksPermanentError):
    """Flinks answered 409 to a confirm: what /details records decides what it means."""


class FlinksSessionNotFoundError(FlinksPermanentError):
    """Flinks does not know the session (404)."""


class FlinksAuthError(FlinksPermanentError):
    """Flinks refused our credentials or token even after re-authorizing once."""
