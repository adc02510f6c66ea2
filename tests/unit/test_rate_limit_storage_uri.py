"""``rate_limit_storage_uri`` is checked with the connection, before any request, its password masked."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.test_connection import parse

RATE = {"requests_per_second": 100}


def storage(value: Any, **extra: Any) -> Any:
    return parse(extra_dejson={**RATE, **extra, "rate_limit_storage_uri": value})


@pytest.mark.parametrize(
    "uri",
    [
        "redis://127.0.0.1:6379/0",
        "redis://:s3cret@redis.internal:6379/2",
        "rediss://user:s3cret@redis.internal",
        "redis+unix:///run/redis/redis.sock",
        "redis+sentinel://:s3cret@s1:26379,s2:26379/mymaster",
        "redis+cluster://n1:7000,n2:7001",
    ],
)
def test_redis_forms_are_accepted_and_kept_out_of_repr(uri):
    settings = storage(uri)
    assert settings.rate_limit_storage_uri == uri
    assert "s3cret" not in repr(settings)


def test_empty_means_no_shared_budget():
    assert parse().rate_limit_storage_uri is None
    assert storage("").rate_limit_storage_uri is None  # an empty form field


@pytest.mark.parametrize(
    ("uri", "fix"),
    [
        ("memory://", "is not a shared store: use one of redis://"),
        ("memcached://:s3cret@cache:11211", "is not a shared store"),
        ("http://:s3cret@redis:6379", "is not a shared store"),
        ("127.0.0.1:6379", "is not a shared store"),
        ("redis://:s3cret@redis:port/0", "is not host[:port]"),
        ("redis://:s3cret@/0", "is not host[:port]"),
        ("redis://:s3cret@a:1,b:2/0", "redis+sentinel:// or redis+cluster://"),
        ("redis+sentinel://:s3cret@s1:26379", "name the Sentinel service"),
        ("redis://:s3cret@redis:6379/zero", "the database must be a number"),
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


def test_a_store_without_requests_per_second_is_refused():
    with pytest.raises(ValueError, match="rate_limit_storage_uri") as refused:
        parse(extra_dejson={"rate_limit_storage_uri": "redis://:s3cret@redis:6379/0"})
    message = str(refused.value)
    assert "extra.rate_limit_storage_uri='redis://:***@redis:6379/0' is not valid" in message
    assert "set extra.requests_per_second too" in message
    assert "s3cret" not in message


def test_the_store_password_is_scrubbed_like_the_token():
    settings = storage("redis://:s3cret@redis:6379/0")
    assert settings.scrub("echoed s3cret and secret-token") == "echoed *** and ***"
