"""Every function that calls Flinks validates its base URL the same way (geft.flinks_settings)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from decision_processor.config import ProcessorConfig
from geft.errors import ConfigError
from geft.flinks_settings import DEFAULT_MAX_RESPONSE_BYTES, flinks_base_url
from scheduled_jobs.config import ReconcilerConfig

from tests.support.constants import REFUSED_FLINKS_BASE_URLS

COMMON = {
    "TABLE_NAME": "guarantees",
    "FLINKS_CREDENTIALS_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:000000000000:secret:flinks",
    "DECISION_POLICY": '{"default": "reject", "rules": []}',
}
CONFIGS: dict[str, Callable[[dict[str, str]], Any]] = {
    "processor": ProcessorConfig.from_env,
    "reconciler": ReconcilerConfig.from_env,
}


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://payments.flinksapp.com", "https://payments.flinksapp.com"),
        ("https://payments-uat.flinksapp.com/", "https://payments-uat.flinksapp.com"),
        ("  HTTPS://Payments.FlinksApp.com:8443  ", "https://payments.flinksapp.com:8443"),
        ("http://127.0.0.1:8765", "http://127.0.0.1:8765"),
        ("http://localhost:8765", "http://localhost:8765"),
        ("http://[::1]:8765", "http://[::1]:8765"),
        ("https://127.0.0.1:8443", "https://127.0.0.1:8443"),
    ],
)
def test_accepted_base_urls_are_normalised(given: str, expected: str) -> None:
    assert flinks_base_url(given) == expected


@pytest.mark.parametrize("given", REFUSED_FLINKS_BASE_URLS)
def test_refused_base_urls(given: str) -> None:
    with pytest.raises(ValueError, match="Flinks base URL"):
        flinks_base_url(given)


@pytest.mark.parametrize("function", list(CONFIGS))
@pytest.mark.parametrize(
    "base_url", ["http://localhost.attacker.example", "https://user:pw@payments.flinksapp.com", "nonsense"]
)
def test_both_configurations_refuse_the_same_base_urls(function: str, base_url: str) -> None:
    # GIVEN / WHEN / THEN the processor and the reconciler fail to start with the same message
    with pytest.raises(ConfigError, match="FLINKS_BASE_URL: the Flinks base URL"):
        CONFIGS[function]({**COMMON, "FLINKS_BASE_URL": base_url})


@pytest.mark.parametrize("function", list(CONFIGS))
def test_both_configurations_read_the_same_flinks_settings(function: str) -> None:
    # GIVEN
    environ = {
        **COMMON,
        "FLINKS_BASE_URL": "https://payments.flinksapp.com/",
        "FLINKS_CREDENTIAL_TRANSPORT": "form",
        "HTTP_READ_TIMEOUT_SECONDS": "4",
        "FLINKS_MAX_RESPONSE_BYTES": "65536",
        "FLINKS_TRUST_ENV": "true",
    }

    # WHEN
    settings = CONFIGS[function](environ).flinks

    # THEN
    assert settings.base_url == "https://payments.flinksapp.com"
    assert settings.credential_transport == "form"
    assert settings.read_timeout_seconds == 4.0
    assert settings.max_response_bytes == 65536
    assert settings.trust_env is True


@pytest.mark.parametrize("function", list(CONFIGS))
def test_defaults_trust_nothing_from_the_environment_and_cap_answers_at_1_mib(function: str) -> None:
    settings = CONFIGS[function]({**COMMON, "FLINKS_BASE_URL": "https://payments.flinksapp.com"}).flinks
    assert settings.trust_env is False
    assert settings.max_response_bytes == DEFAULT_MAX_RESPONSE_BYTES == 1 << 20


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("FLINKS_MAX_RESPONSE_BYTES", "100"),
        ("FLINKS_MAX_RESPONSE_BYTES", str(1 << 30)),
        ("FLINKS_TRUST_ENV", "yes"),
        ("FLINKS_TOKEN_POOL_SIZE", "-1"),
        ("FLINKS_TOKEN_POOL_SIZE", "17"),
        ("FLINKS_TOKEN_POOL_MARGIN_SECONDS", "0"),
    ],
)
def test_bad_limits_stop_the_processor_at_start(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        ProcessorConfig.from_env({**COMMON, "FLINKS_BASE_URL": "https://payments.flinksapp.com", name: value})


def test_the_token_pool_is_on_by_default_with_a_small_size() -> None:
    config = ProcessorConfig.from_env({**COMMON, "FLINKS_BASE_URL": "https://payments.flinksapp.com"})
    assert (config.token_pool_size, config.token_pool_margin_seconds) == (4, 30.0)
