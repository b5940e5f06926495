"""Where and how every function talks to Flinks: one base-URL check and one reader for the settings.

The processor and the reconciler both call Flinks with the same credentials, so they validate the
base URL the same way (``flinks_base_url``) and read the same variables (``FlinksSettings.read``).
Stdlib only: the receiver never imports this module, and nothing here touches the network.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import urlsplit

from geft.settings import EnvReader

CredentialTransport = Literal["basic", "form"]

LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1"})
"""Hosts plain ``http`` is allowed for: a local sandbox on this machine, matched exactly."""

DEFAULT_MAX_RESPONSE_BYTES: Final = 1 << 20
# A JSON /details is a few KiB; 64 MiB would already threaten a 512 MB function.
MAX_RESPONSE_BYTES_CEILING: Final = 64 << 20
MIN_RESPONSE_BYTES: Final = 4096

# RFC 1123 host names: dot-separated labels of letters, digits and inner hyphens.
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


def flinks_base_url(value: str) -> str:
    """The validated base URL (``scheme://host[:port]``, no trailing slash), or ``ValueError``.

    ``https`` with a DNS host name (or a loopback address); plain ``http`` only when the parsed host
    is exactly 127.0.0.1, localhost or [::1] (a local sandbox). No user info, path, query or fragment:
    nothing that could smuggle credentials or send calls somewhere other than the host it names.
    """
    text = value.strip()
    if not text:
        raise ValueError("the Flinks base URL is empty")
    if any(ch.isspace() or not ch.isprintable() for ch in text) or "\\" in text:
        raise ValueError("the Flinks base URL contains whitespace, control characters or backslashes")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"the Flinks base URL is not a valid URL ({exc})") from None
    if parts.scheme not in ("https", "http"):
        raise ValueError("the Flinks base URL must start with https://")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ValueError("the Flinks base URL must not carry user info")
    if parts.path not in ("", "/") or parts.query or parts.fragment or text.endswith(("?", "#")):
        raise ValueError("the Flinks base URL must be scheme://host[:port] without path, query or fragment")
    host = (parts.hostname or "").lower()
    if not host:
        raise ValueError("the Flinks base URL has no host")
    loopback = host in LOOPBACK_HOSTS
    if parts.scheme == "http" and not loopback:
        raise ValueError(
            "the Flinks base URL must be https:// (plain http only for 127.0.0.1, localhost or [::1])"
        )
    if not loopback and not _is_dns_name(host):
        raise ValueError("the Flinks base URL host must be a DNS name (IP addresses only for loopback)")
    if port == 0:
        raise ValueError("the Flinks base URL port must be between 1 and 65535")
    netloc = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{netloc}" + (f":{port}" if port is not None else "")


def _is_dns_name(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return False
    labels = host.removesuffix(".").split(".")
    # An all-digit last label ("127.1", "0x7f.1" style) is an address that resolvers accept, not a name.
    return (
        len(host) <= 253
        and len(labels) >= 2
        and all(_LABEL.fullmatch(label) for label in labels)
        and not labels[-1].isdigit()
        and not labels[-1].startswith("0x")
    )


@dataclass(frozen=True)
class FlinksSettings:
    """How a function reaches Flinks: the same variables, defaults and checks in every function."""

    base_url: str
    credentials_secret_id: str
    credential_transport: CredentialTransport
    connect_timeout_seconds: float
    # The most one answer may take after connecting: every socket read gets what is left of it.
    read_timeout_seconds: float
    max_response_bytes: int
    # Take proxies, CA bundles and .netrc from the environment (HTTPS_PROXY, REQUESTS_CA_BUNDLE, ...).
    trust_env: bool

    @classmethod
    def read(cls, env: EnvReader) -> FlinksSettings:
        """Reads the FLINKS_* and HTTP_* variables; problems are added to ``env`` (raise them there)."""
        raw_url = env.text("FLINKS_BASE_URL")
        base_url = ""
        if raw_url:
            try:
                base_url = flinks_base_url(raw_url)
            except ValueError as exc:
                env.problems.append(f"FLINKS_BASE_URL: {exc}")
        transport = env.choice("FLINKS_CREDENTIAL_TRANSPORT", "basic", frozenset({"basic", "form"}))
        return cls(
            base_url=base_url,
            credentials_secret_id=env.text("FLINKS_CREDENTIALS_SECRET_ARN"),
            credential_transport="form" if transport == "form" else "basic",
            connect_timeout_seconds=env.number("HTTP_CONNECT_TIMEOUT_SECONDS", 3.05, minimum=0.1),
            read_timeout_seconds=env.number("HTTP_READ_TIMEOUT_SECONDS", 10.0, minimum=0.1),
            max_response_bytes=env.integer(
                "FLINKS_MAX_RESPONSE_BYTES",
                DEFAULT_MAX_RESPONSE_BYTES,
                minimum=MIN_RESPONSE_BYTES,
                maximum=MAX_RESPONSE_BYTES_CEILING,
            ),
            trust_env=env.choice("FLINKS_TRUST_ENV", "false", frozenset({"true", "false"})) == "true",
        )
