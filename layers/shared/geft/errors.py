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
    """Worth retrying later: connection errors, timeouts, 408, 429, 5xx, retries exhausted in the call."""


class FlinksProtocolError(FlinksTransientError):
    """Flinks answered 2xx with a body we cannot read (not JSON, wrong shape)."""


class FlinksConfirmOutcomeUnknownError(FlinksTransientError):
    """A confirm may have reached Flinks' handling, but its answer did not arrive (read timeout,
    connection dropped after the request was written, 500/502/504, a cut-off answer).

    Raised at once: the client never reads ``/details`` or re-sends a confirm itself. The caller
    decides, after a settle delay, from what ``/details`` then says about this guarantee.
    """


class FlinksResponseTooLargeError(FlinksTransientError):
    """An answer was longer than the configured cap; reading stopped there.

    Not retried within the call (the same session gives the same answer). Transient for the caller:
    the stream retries it a bounded number of times and then dead-letters it, where an operator can
    redrive it once Flinks (or whatever sits in between) is fixed; it says nothing about the guarantee,
    so it must not become a FAILED decision.
    """


class FlinksPermanentError(FlinksError):
    """Retrying cannot help: 400, 404, 409, other 4xx but 408/429 (after one re-authorization on 401)."""


class FlinksConflictError(FlinksPermanentError):
    """Flinks answered 409 (e.g. a decision already recorded, or no pending guarantee): the caller
    reads ``/details`` to learn what Flinks holds instead of treating it as a refusal."""


class FlinksSessionNotFoundError(FlinksPermanentError):
    """Flinks does not know the session (404)."""


class FlinksAuthError(FlinksPermanentError):
    """Flinks refused our credentials or token even after re-authorizing once."""
