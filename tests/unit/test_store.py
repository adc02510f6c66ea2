"""``store.redis_client`` takes the password from ``rate_limit_storage_password``, never from the URI.

Built, not connected (redis-py connects lazily): what each client would send when it signs in.
"""

from __future__ import annotations

import pytest

pytest.importorskip("redis")

from airflow_provider_toloka.store import redis_client

PASSWORD = "store-pw-5150"


@pytest.mark.parametrize(
    ("uri", "username"),
    [
        ("redis://redis:6379/3", None),
        ("rediss://budget:@redis:6380/0", "budget"),  # an ACL user: USERNAME:@
        ("redis+unix:///run/redis/redis.sock", None),
    ],
)
def test_a_single_redis_signs_in_with_the_fields_password(uri, username):
    kwargs = redis_client(uri, timeout=1.0, password=PASSWORD).connection_pool.connection_kwargs
    assert kwargs["password"] == PASSWORD
    assert kwargs.get("username") == username


def test_no_password_field_means_none_is_sent():
    kwargs = redis_client("redis://redis:6379/3", timeout=1.0).connection_pool.connection_kwargs
    assert kwargs.get("password") is None


def test_with_sentinel_the_password_is_the_masters_and_the_sentinels_are_asked_without_one():
    client = redis_client("redis+sentinel://s1:26379,s2:26379/mymaster", timeout=1.0, password=PASSWORD)
    pool = client.connection_pool
    assert pool.service_name == "mymaster"
    assert pool.connection_kwargs["password"] == PASSWORD
    sentinels = pool.sentinel_manager.sentinels
    assert len(sentinels) == 2
    assert all(s.connection_pool.connection_kwargs.get("password") is None for s in sentinels)
