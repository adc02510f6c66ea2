from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from airflow_provider_toloka.connection import TolokaConnectionSettings


@dataclass
class Conn:
    """The attributes of ``airflow.sdk.Connection`` the parser reads."""

    password: str | None = "secret-token"
    host: str | None = None
    port: int | None = None
    extra_dejson: dict[str, Any] = field(default_factory=dict)
    conn_id: str = "toloka_default"


def parse(**kwargs: Any) -> TolokaConnectionSettings:
    return TolokaConnectionSettings.from_connection(Conn(**kwargs))


def test_production_is_the_default():
    settings = parse()
    assert settings.api_url == "https://toloka.dev/api/v1"
    assert settings.authorization == "OAuth secret-token"
    assert settings.ui_base_url == "https://platform.toloka.ai"


def test_sandbox_and_api_key():
    settings = parse(extra_dejson={"environment": "sandbox", "auth_scheme": "ApiKey"})
    assert settings.api_url == "https://sandbox.toloka.dev/api/v1"
    assert settings.authorization == "ApiKey secret-token"


@pytest.mark.parametrize(
    ("host", "port", "api_url"),
    [
        ("http://127.0.0.1:8765", None, "http://127.0.0.1:8765/api/v1"),
        ("127.0.0.1", 8765, "http://127.0.0.1:8765/api/v1"),
        ("localhost:9000/", None, "http://localhost:9000/api/v1"),
        ("http://[::1]:8000", None, "http://[::1]:8000/api/v1"),
        ("https://proxy.example.com/toloka/api/v1", None, "https://proxy.example.com/toloka/api/v1"),
        ("toloka.example.com", None, "https://toloka.example.com/api/v1"),
    ],
)
def test_host_overrides_environment(host, port, api_url):
    assert parse(host=host, port=port, extra_dejson={"environment": "sandbox"}).api_url == api_url


@pytest.mark.parametrize(
    "host", ["http://toloka.dev", "http://10.0.0.5:8080", "http://127.0.0.1.example.com"]
)
def test_plain_http_is_refused_off_loopback(host):
    with pytest.raises(ValueError, match=r"'toloka_default': host=.*unencrypted"):
        parse(host=host)


@pytest.mark.parametrize("host", ["ftp://127.0.0.1", "https://", "https://h:notaport", "https://h/?q=1"])
def test_malformed_hosts_are_refused(host):
    with pytest.raises(ValueError, match=r"Toloka connection 'toloka_default': host="):
        parse(host=host)


@pytest.mark.parametrize("password", [None, "", "   "])
def test_missing_token_names_the_connection_and_field(password):
    with pytest.raises(ValueError, match=r"'toloka_default' has no token.*password field"):
        parse(password=password)


def test_unknown_environment_and_scheme():
    with pytest.raises(ValueError, match=r"extra.environment='prod'.*'production' or 'sandbox'"):
        parse(extra_dejson={"environment": "prod"})
    with pytest.raises(ValueError, match=r"extra.auth_scheme='Bearer'.*'OAuth'.*'ApiKey'"):
        parse(extra_dejson={"auth_scheme": "Bearer"})


def test_retry_and_timeout_extras():
    settings = parse(extra_dejson={"max_retries": "2", "timeout": 5})
    assert (settings.max_retries, settings.timeout) == (2, 5.0)
    with pytest.raises(ValueError, match=r"extra.max_retries=-3 is not valid"):
        parse(extra_dejson={"max_retries": -3})


def test_token_is_not_in_repr():
    assert "secret-token" not in repr(parse())


def test_requests_per_second_is_unset_by_default_and_read_as_a_number():
    assert parse().requests_per_second is None
    assert parse(extra_dejson={"requests_per_second": ""}).requests_per_second is None  # an empty form field
    assert parse(extra_dejson={"requests_per_second": "100"}).requests_per_second == 100.0
    assert parse(extra_dejson={"requests_per_second": 0.5}).requests_per_second == 0.5
    assert parse(extra_dejson={"requests_per_second": 300}).requests_per_second == 300.0


@pytest.mark.parametrize(
    "value", [0, -5, "nan", float("nan"), float("inf"), "inf", "fast", True, [100], 300.5, 1000]
)
def test_requests_per_second_out_of_range_or_not_a_number_is_refused(value):
    with pytest.raises(ValueError, match="requests_per_second") as refused:
        parse(extra_dejson={"requests_per_second": value})
    message = str(refused.value)
    assert f"extra.requests_per_second={value!r} is not valid" in message
    assert "above 0 and at most 300" in message
    assert "leave it empty" in message
