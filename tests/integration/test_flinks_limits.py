"""FlinksClient's outbound limits over real HTTP on 127.0.0.1: size cap, total deadline, one host, TLS
verification, and nothing taken from the environment (proxies, CA bundles, .netrc) unless opted in.

Elapsed times are compared with what the server would have taken, by a wide margin, never with a
tight bound: a loaded machine must not fail these.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from geft.backoff import RetryPolicy
from geft.errors import (
    FlinksAuthError,
    FlinksPermanentError,
    FlinksResponseTooLargeError,
    FlinksTransientError,
)
from geft.flinks_client import ConfirmResult, FlinksClient, FlinksCredentials

from testkit.flinks import FlinksSandbox, Scenario
from testkit.http import Answer, RecordingServer, Request
from tests.support.constants import REFUSED_FLINKS_BASE_URLS, TEST_FLINKS_CREDENTIALS
from tests.support.flinks_calls import CallRecorder

USERNAME = TEST_FLINKS_CREDENTIALS["username"]  # what the shared sandbox fixture accepts
PASSWORD = TEST_FLINKS_CREDENTIALS["password"]
DETAILS = "/details"
MIB = 1 << 20

ClientFactory = Callable[..., FlinksClient]


@pytest.fixture
def make_client(recorder: CallRecorder) -> Iterator[ClientFactory]:
    with ExitStack() as stack:

        def factory(base_url: str, **options: Any) -> FlinksClient:
            credentials = options.pop("credentials", FlinksCredentials(USERNAME, PASSWORD))
            options = {
                "sleep": lambda _seconds: None,
                "connect_timeout": 1.0,
                "read_timeout": 2.0,
                "on_call": recorder,
                **options,
            }
            client = FlinksClient(base_url, lambda: credentials, **options)
            stack.callback(client.close)
            return client

        yield factory


def deadline_in(seconds: float) -> float:
    return time.monotonic() + seconds


# -- response size cap ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["oversize:300000000", "oversize-chunked:300000000"])
def test_a_300_mb_details_is_refused_without_holding_it_in_memory(
    fault: str, sandbox: FlinksSandbox, make_client: ClientFactory, recorder: CallRecorder
) -> None:
    # GIVEN a /details of 300 MB (with a Content-Length, or chunked without one) and the 1 MiB default cap
    session_id = sandbox.add_session(scenario=Scenario(faults={"details": [fault]}))
    calls = make_client(sandbox.base_url).for_session(session_id, deadline=deadline_in(20))

    # WHEN
    tracemalloc.start()
    try:
        with pytest.raises(FlinksResponseTooLargeError) as caught:
            calls.details()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    # THEN it stopped at the cap: typed, not retried, and never more than a few MiB in memory
    assert isinstance(caught.value, FlinksTransientError)
    assert caught.value.status_code == 200
    assert len(sandbox.calls(DETAILS)) == 1
    assert peak < 16 * MIB
    assert recorder.summary()[-1] == ("details", 200, "too-large", 1)
    _wait_for(lambda: sandbox.calls(DETAILS)[0].response_bytes is not None)
    written = sandbox.calls(DETAILS)[0].response_bytes
    assert written is not None
    assert written < 100 * MIB  # the sandbox could write only what the socket buffers took


@pytest.mark.parametrize(("size", "refused"), [(4096, False), (4097, True)])
def test_the_cap_is_exact(
    size: int, refused: bool, sandbox: FlinksSandbox, make_client: ClientFactory
) -> None:
    # GIVEN a cap of 4096 bytes and a chunked body of exactly the cap, or one byte more
    session_id = sandbox.add_session(scenario=Scenario(faults={"details": [f"oversize-chunked:{size}"]}))
    calls = make_client(sandbox.base_url, max_response_bytes=4096).for_session(
        session_id, deadline=deadline_in(10)
    )

    # WHEN / THEN
    if refused:
        with pytest.raises(FlinksResponseTooLargeError):
            calls.details()
    else:
        assert len(calls.details()["pad"]) == size - 10


def test_an_oversized_confirm_answer_still_means_confirmed(
    sandbox: FlinksSandbox, make_client: ClientFactory, recorder: CallRecorder
) -> None:
    # GIVEN Flinks records the confirm and answers 200 with a 50 MB body
    session_id = sandbox.add_session(scenario=Scenario(faults={"confirm": ["oversize:50000000"]}))
    calls = make_client(sandbox.base_url).for_session(session_id, deadline=deadline_in(10))

    # WHEN
    result = calls.confirm(True)

    # THEN the 200 is the outcome; the body is not read and the confirm is not sent again
    assert result == ConfirmResult(session_id=None, reference_id=None, body_readable=False)
    assert sandbox.confirms_for(session_id) == [True]
    assert recorder.summary()[-1] == ("confirm", 200, "too-large", 1)


def test_an_oversized_authorize_answer_is_refused_once(
    sandbox: FlinksSandbox, make_client: ClientFactory
) -> None:
    # GIVEN
    session_id = sandbox.add_session()
    sandbox.add_authorize_faults(["oversize-chunked:5000000"])
    calls = make_client(sandbox.base_url).for_session(session_id, deadline=deadline_in(10))

    # WHEN / THEN
    with pytest.raises(FlinksResponseTooLargeError):
        calls.details()
    assert sandbox.authorize_count == 1
    assert sandbox.calls(DETAILS) == []


# -- total deadline per call ---------------------------------------------------------------------------


def test_a_dribbling_answer_cannot_hold_a_call_past_its_deadline(
    sandbox: FlinksSandbox, make_client: ClientFactory, recorder: CallRecorder
) -> None:
    # GIVEN a /details written one byte every 0.5 s from its status line on (about 1.5 KB: 12 minutes),
    # and a call whose deadline is 1.5 s away with a 2 s read timeout (each byte arrives well within it)
    session_id = sandbox.add_session(scenario=Scenario(faults={"details": ["dribble:0.5"]}))
    calls = make_client(sandbox.base_url).for_session(session_id, deadline=deadline_in(1.5))
    started = time.monotonic()

    # WHEN / THEN it gives up with its deadline: every socket read only got what was left of it
    with pytest.raises(FlinksTransientError, match="timed out"):
        calls.details()
    assert time.monotonic() - started < 10.0  # the sandbox would have dribbled for 30 s (its ceiling)
    assert ("details", None, "timeout", 1) in recorder.summary()


def test_a_dribbling_body_is_cut_at_connect_plus_read_timeout(
    sandbox: FlinksSandbox, make_client: ClientFactory, recorder: CallRecorder
) -> None:
    # GIVEN status and headers at once, then the body one byte every 0.5 s; a call with plenty of time
    # but one attempt, and an exchange budget of connect 1 s + read 1 s
    session_id = sandbox.add_session(scenario=Scenario(faults={"details": ["dribble-body:0.5"]}))
    client = make_client(sandbox.base_url, read_timeout=1.0, retry=RetryPolicy(max_attempts=1))
    calls = client.for_session(session_id, deadline=deadline_in(60))
    started = time.monotonic()

    # WHEN / THEN the exchange ends at its own budget, not when the body is complete
    with pytest.raises(FlinksTransientError, match="while reading the body"):
        calls.details()
    assert time.monotonic() - started < 15.0
    assert recorder.summary()[-1] == ("details", 200, "timeout", 1)
    written = sandbox.calls(DETAILS)[0].response_bytes
    assert written is None or written < 30  # about four bytes in 2 s


# -- one host, TLS, and the environment ------------------------------------------------------------------


def _flinks_like(request: Request) -> Answer:
    if request.path == "/api/v1/authorize":
        return Answer.json(
            200, {"access_token": str(uuid.uuid4()), "token_type": "bearer", "expires_in": 299}
        )
    return Answer.json(200, {"sessionId": request.path.split("/")[4]})


def test_a_redirect_to_another_host_is_not_followed(make_client: ClientFactory) -> None:
    # GIVEN Flinks' /details redirecting to another server
    with RecordingServer(_flinks_like) as elsewhere:

        def redirect(request: Request) -> Answer:
            if request.path == "/api/v1/authorize":
                return _flinks_like(request)
            return Answer.json(307, {}, ("Location", f"{elsewhere.url}{request.path}"))

        with RecordingServer(redirect) as flinks:
            calls = make_client(f"http://127.0.0.1:{flinks.port}").for_session(
                str(uuid.uuid4()), deadline=deadline_in(10)
            )

            # WHEN / THEN the 307 is an error, and the other server never hears of the bearer token
            with pytest.raises(FlinksPermanentError, match="307"):
                calls.details()
    assert elsewhere.requests == []


@pytest.mark.parametrize("base_url", REFUSED_FLINKS_BASE_URLS)
def test_the_client_refuses_a_base_url_that_is_not_flinks_https(base_url: str) -> None:
    # GIVEN / WHEN / THEN the same check the functions' configurations use
    with pytest.raises(ValueError, match="Flinks base URL"):
        FlinksClient(base_url, lambda: FlinksCredentials(USERNAME, PASSWORD))


def test_proxies_from_the_environment_are_ignored_unless_opted_in(
    sandbox: FlinksSandbox, make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN an HTTP_PROXY in the environment pointing at a recording "proxy"
    session_id = sandbox.add_session()
    with RecordingServer(lambda request: Answer.json(502, {"title": "proxy"})) as proxy:
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
        monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy.port}")

        # WHEN the default client calls Flinks, and then one that trusts the environment
        make_client(sandbox.base_url).for_session(session_id, deadline=deadline_in(10)).details()
        direct_calls = len(sandbox.calls())
        opted_in = make_client(sandbox.base_url, trust_env=True, retry=RetryPolicy(max_attempts=1))
        with pytest.raises(FlinksTransientError):
            opted_in.for_session(session_id, deadline=deadline_in(10)).details()

    # THEN the default went straight to Flinks; only the opted-in client used the proxy
    assert direct_calls == 2
    assert len(sandbox.calls()) == 2
    assert [(request.method, request.path) for request in proxy.requests] == [
        ("POST", f"{sandbox.base_url}/api/v1/authorize")
    ]


def test_netrc_credentials_are_never_added_unless_opted_in(
    tmp_path: Path, sandbox: FlinksSandbox, make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a .netrc naming the Flinks host, and the form transport (no Authorization header of ours)
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login netrc-user password netrc-password\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    session_id = sandbox.add_session()

    # WHEN the default client reads /details, and then one that trusts the environment
    make_client(sandbox.base_url, credential_transport="form").for_session(
        session_id, deadline=deadline_in(10)
    ).details()
    default_calls = sandbox.calls()
    opted_in = make_client(sandbox.base_url, credential_transport="form", trust_env=True)
    with pytest.raises(FlinksAuthError):
        opted_in.for_session(session_id, deadline=deadline_in(10)).details()

    # THEN the default sent no Authorization of its own making; the opted-in client sent the .netrc
    # login to authorize, and it even replaced the bearer token on /details (so Flinks refused it)
    assert [entry.headers.get("authorization") for entry in default_calls] == [None, "Bearer [redacted]"]
    later = sandbox.calls()[len(default_calls) :]
    assert later[0].endpoint == "authorize"
    assert {entry.headers.get("authorization") for entry in later} == {"Basic [redacted]"}
    assert {entry.endpoint for entry in later if entry.response_status == 401} == {"details"}


@pytest.fixture
def self_signed(tmp_path: Path) -> Iterator[tuple[str, Path, RecordingServer]]:
    """An HTTPS Flinks look-alike on 127.0.0.1 whose certificate no system CA vouches for."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sandbox.invalid")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            True,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    server = RecordingServer(_flinks_like)
    server.serve_tls(context)
    with server:
        yield f"https://127.0.0.1:{server.port}", cert_path, server


def test_tls_verification_refuses_an_unknown_certificate_and_ca_bundles_need_the_opt_in(
    self_signed: tuple[str, Path, RecordingServer],
    make_client: ClientFactory,
    recorder: CallRecorder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base_url, cert_path, server = self_signed
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert_path))
    session_id = str(uuid.uuid4())

    # WHEN the default client calls (REQUESTS_CA_BUNDLE trusting the server is in the environment)
    default = make_client(base_url, retry=RetryPolicy(max_attempts=1))
    with pytest.raises(FlinksTransientError, match="connection failed"):
        default.for_session(session_id, deadline=deadline_in(10)).details()
    refused = recorder.summary()

    # THEN the certificate was refused before any request was sent: the bundle from the environment
    # was not used; opting in uses it
    assert refused == [("authorize", None, "connection-error", 1)]
    assert server.requests == []
    details = (
        make_client(base_url, trust_env=True).for_session(session_id, deadline=deadline_in(10)).details()
    )
    assert details == {"sessionId": session_id}


def _wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    give_up_at = time.monotonic() + seconds
    while not condition() and time.monotonic() < give_up_at:
        time.sleep(0.02)
