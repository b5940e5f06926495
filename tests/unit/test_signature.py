"""Signature verification against vectors computed independently with
`printf '%s' BODY | openssl dgst -sha256 -hmac SECRET` (not with the code under test)."""

from __future__ import annotations

import pytest
from geft.signature import compute_signature, verify_signature

BODY = b'{"sessionId":"aadd08f2-83ce-456d-84ed-c68cfed4ee7b","when":"2026-11-23T12:00:00Z"}'
# openssl dgst -sha256 -hmac test-secret-one / test-secret-two over BODY
HEX_SECRET_ONE = "1e967445205c6ccfb646fb7b03e16645499afc3b07f5f0c26d46c1fbd20145fb"
HEX_SECRET_TWO = "eaa259ec86945230d90c6d2a5648fa383a594be26b1ea6fd1e9407cbad4d3e01"
# openssl over the empty body, and over non-UTF-8 bytes with a non-ASCII secret
HEX_EMPTY_SECRET_ONE = "9ee4d161815116719bfdd94be265518dfcdf5b73252bde1dcfef718ca45efcc5"
BINARY_BODY = "café ".encode() + b"\x00\xff"
HEX_BINARY = "9e00b35465c4b6dd09065fdc70242eaeceb3849d358688023bb8a52ea86b1547"


@pytest.mark.parametrize(
    ("body", "header", "secrets", "expected"),
    [
        pytest.param(
            BODY, "sha256=" + HEX_SECRET_ONE.upper(), ["test-secret-one"], True, id="uppercase-as-flinks"
        ),
        pytest.param(BODY, "sha256=" + HEX_SECRET_ONE, ["test-secret-one"], True, id="lowercase"),
        pytest.param(BODY, "SHA256=" + HEX_SECRET_ONE.upper(), ["test-secret-one"], True, id="scheme-case"),
        pytest.param(BODY, "  sha256=" + HEX_SECRET_ONE + " ", ["test-secret-one"], True, id="padded"),
        pytest.param(b"", "sha256=" + HEX_EMPTY_SECRET_ONE, ["test-secret-one"], True, id="empty-body"),
        pytest.param(BINARY_BODY, "sha256=" + HEX_BINARY, ["sécret"], True, id="binary-body-utf8-secret"),
        pytest.param(BODY, "sha256=" + HEX_SECRET_ONE, ["wrong", "test-secret-one"], True, id="previous"),
        pytest.param(BODY, "sha256=" + HEX_SECRET_TWO, ["test-secret-one"], False, id="wrong-secret"),
        pytest.param(BODY + b" ", "sha256=" + HEX_SECRET_ONE, ["test-secret-one"], False, id="body-changed"),
        pytest.param(BODY, "sha256=" + HEX_SECRET_ONE[:-2], ["test-secret-one"], False, id="truncated"),
        pytest.param(BODY, "sha256=" + HEX_SECRET_ONE + "00", ["test-secret-one"], False, id="too-long"),
        pytest.param(BODY, HEX_SECRET_ONE, ["test-secret-one"], False, id="no-scheme"),
        pytest.param(BODY, "sha1=" + HEX_SECRET_ONE, ["test-secret-one"], False, id="other-scheme"),
        pytest.param(BODY, "sha256=" + "z" * 64, ["test-secret-one"], False, id="not-hex"),
        pytest.param(BODY, "sha256=" + "é" * 64, ["test-secret-one"], False, id="non-ascii"),
        pytest.param(BODY, "", ["test-secret-one"], False, id="empty-header"),
        pytest.param(BODY, None, ["test-secret-one"], False, id="missing-header"),
        pytest.param(BODY, "sha256=" + HEX_SECRET_ONE, [], False, id="no-secret-configured"),
        pytest.param(
            BODY,
            f"sha256={HEX_SECRET_ONE},sha256={HEX_SECRET_ONE}",
            ["test-secret-one"],
            False,
            id="repeated-header",
        ),
    ],
)
def test_verify_signature(body: bytes, header: str | None, secrets: list[str], expected: bool) -> None:
    assert verify_signature(body, header, secrets) is expected


def test_compute_signature_matches_openssl_in_uppercase() -> None:
    assert compute_signature(BODY, "test-secret-one") == "sha256=" + HEX_SECRET_ONE.upper()


def test_signature_of_another_body_does_not_verify() -> None:
    # GIVEN a valid signature, but of a different body (a replayed header on new content)
    other_signature = compute_signature(b'{"sessionId":"other"}', "test-secret-one")

    # THEN it does not verify our body
    assert not verify_signature(BODY, other_signature, ["test-secret-one"])
