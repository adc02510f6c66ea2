"""``rate_limit_storage_uri`` is checked with the connection, before any request; the password is not in it.

The store's password has its own extra, ``rate_limit_storage_password``, whose name Airflow redacts.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.test_connection import parse

RATE = {"requests_per_second": 100}
PASSWORD = "s3cret-store-pw"


def storage(value: Any, **extra: Any) -> Any:
    return parse(extra_dejson={**RATE, **extra, "rate_limit_storage_uri": value})


@pytest.mark.parametrize(
    "uri",
    [
        "redis://127.0.0.1:6379/0",
        "redis://redis.internal:6379/2",
        "rediss://budget:@redis.internal",  # an ACL username, no password
        "redis+unix:///run/redis/redis.sock",
        "redis+sentinel://s1:26379,s2:26379/mymaster",
        "redis+cluster://n1:7000,n2:7001",
        "redis://redis:6379/0?socket_keepalive=true",
    ],
)
def test_redis_forms_are_accepted_with_the_password_in_its_own_field(uri):
    settings = storage(uri, rate_limit_storage_password=PASSWORD)
    assert settings.rate_limit_storage_uri == uri
    assert settings.rate_limit_storage_password == PASSWORD
    assert PASSWORD not in repr(settings)


def test_empty_means_no_shared_budget_and_no_password():
    assert parse().rate_limit_storage_uri is None
    settings = storage("", rate_limit_storage_password=None)  # empty form fields
    assert settings.rate_limit_storage_uri is None
    assert settings.rate_limit_storage_password is None
    assert storage("redis://redis:6379/0", rate_limit_storage_password="").rate_limit_storage_password is None


@pytest.mark.parametrize(
    ("uri", "fix"),
    [
        ("memory://", "is not a shared store: use one of redis://"),
        ("memcached://:s3cret@cache:11211", "is not a shared store"),
        ("http://redis:6379", "is not a shared store"),
        ("127.0.0.1:6379", "is not a shared store"),
        ("redis://redis:port/0", "is not host[:port]"),
        ("redis:///0", "is not host[:port]"),
        ("redis://a:1,b:2/0", "redis+sentinel:// or redis+cluster://"),
        ("redis+sentinel://s1:26379", "name the Sentinel service"),
        ("redis://redis:6379/zero", "the database must be a number"),
        ("redis+unix://", "give the socket's path"),
    ],
)
def test_unknown_schemes_and_malformed_uris_are_refused_naming_the_field_and_fix(uri, fix):
    with pytest.raises(ValueError, match="rate_limit_storage_uri") as refused:
        storage(uri)
    message = str(refused.value)
    assert "extra.rate_limit_storage_uri=" in message
    assert fix in message
    assert "s3cret" not in message
    if "s3cret" in uri:
        assert "***" in message


@pytest.mark.parametrize(
    ("uri", "shown", "where"),
    [
        ("redis://:s3cret@redis:6379/0", "redis://:***@redis:6379/0", "carries a password"),
        ("rediss://budget:s3cret@redis", "rediss://budget:***@redis", "carries a password"),
        ("redis://s3cret@redis:6379/0", "redis://***@redis:6379/0", "lone name before '@'"),
        ("redis://redis:6379/0?password=s3cret", "redis://redis:6379/0?password=***", "password="),
        (
            "redis+sentinel://s1:26379/mymaster?sentinel_password=s3cret",
            "redis+sentinel://s1:26379/mymaster?sentinel_password=***",
            "sentinel_password=",
        ),
        (
            "redis+sentinel://:s3cret@s1:26379,s2:26379/mymaster",
            "redis+sentinel://:***@s1:26379,s2:26379/mymaster",
            "carries a password",
        ),
        ("redis+unix://:s3cret@/run/redis.sock", "redis+unix://:***@/run/redis.sock", "carries a password"),
    ],
)
def test_a_password_in_the_uri_is_refused_with_the_field_to_move_it_to(uri, shown, where):
    """Before any request: the URI is an extra Airflow shows in clear, so no password may stay in it."""
    with pytest.raises(ValueError, match="rate_limit_storage_uri") as refused:
        storage(uri)
    message = str(refused.value)
    assert f"extra.rate_limit_storage_uri={shown!r} is not valid" in message
    assert where in message
    assert 'move the password to the rate_limit_storage_password extra (form field "Rate limit storage ' in (
        message
    )
    assert "the Airflow UI and REST API mask" in message
    assert "s3cret" not in message


def test_a_store_without_requests_per_second_is_refused():
    with pytest.raises(ValueError, match="rate_limit_storage_uri") as refused:
        parse(extra_dejson={"rate_limit_storage_uri": "redis://:s3cret@redis:6379/0"})
    message = str(refused.value)
    assert "extra.rate_limit_storage_uri='redis://:***@redis:6379/0' is not valid" in message
    assert "set extra.requests_per_second too" in message
    assert "s3cret" not in message


@pytest.mark.parametrize("uri", [None, ""])
def test_a_password_without_a_store_is_refused_without_showing_it(uri):
    with pytest.raises(ValueError, match="rate_limit_storage_password") as refused:
        parse(extra_dejson={**RATE, "rate_limit_storage_uri": uri, "rate_limit_storage_password": PASSWORD})
    message = str(refused.value)
    assert "extra.rate_limit_storage_password='***' is not valid" in message
    assert "extra.rate_limit_storage_uri, which is empty: set the store too" in message
    assert PASSWORD not in message


def test_a_password_that_is_not_a_string_is_refused_without_showing_it():
    with pytest.raises(ValueError, match="rate_limit_storage_password") as refused:
        storage("redis://redis:6379/0", rate_limit_storage_password=123456789)
    message = str(refused.value)
    assert "extra.rate_limit_storage_password='***' is not valid" in message
    assert "123456789" not in message


def test_the_store_password_is_scrubbed_like_the_token():
    settings = storage("redis://redis:6379/0", rate_limit_storage_password=PASSWORD)
    assert settings.scrub(f"echoed {PASSWORD} and secret-token") == "echoed *** and ***"


def test_the_store_password_is_masked_in_task_logs_once_read():
    """Told to the task SDK's secrets masker, which redacts task logs and rendered fields."""
    try:
        from airflow.sdk.log import redact  # type: ignore[attr-defined]
    except ImportError:  # Airflow 3.0
        from airflow.sdk.execution_time.secrets_masker import redact

    password = "masked-in-logs-7c1f"
    storage("redis://redis:6379/0", rate_limit_storage_password=password)
    assert redact(f"AUTH {password}") == "AUTH ***"


def test_airflows_rest_api_redacts_the_password_field_and_the_uri_holds_none():
    """What ``GET /api/v2/connections/{id}`` (and the UI's connection list and form) answer with.

    Airflow redacts an extra by its key's name (``should_hide_value_for_key``): "password" is one of the
    sensitive words on every supported minor, with no ``sensitive_var_conn_names`` configured.
    """
    import json

    from airflow.api_fastapi.core_api.datamodels.connections import ConnectionResponse
    from airflow.models.connection import Connection

    uri = "redis://budget:@redis.internal:6379/0"
    extra = {**RATE, "rate_limit_storage_uri": uri, "rate_limit_storage_password": PASSWORD}
    conn = Connection(conn_id="toloka_budget", conn_type="toloka", password="token", extra=json.dumps(extra))
    assert storage(uri, rate_limit_storage_password=PASSWORD).rate_limit_storage_password == PASSWORD

    answer = ConnectionResponse.model_validate(conn).model_dump(mode="json", by_alias=True)

    shown = json.loads(answer["extra"])
    assert shown["rate_limit_storage_password"] == "***"
    assert shown["rate_limit_storage_uri"] == uri
    assert PASSWORD not in json.dumps(answer)
