"""A Redis client for a ``rate_limit_storage_uri``, whatever form of Redis it names.

redis-py reads ``redis://``, ``rediss://`` and ``unix://`` URIs itself; Sentinel and Cluster take a list of
hosts it has no URI for. This module turns each form ``storage_uri.SCHEMES`` accepts into a client, with
short time-outs: a store that does not answer within ``timeout`` must not hold up a request to Toloka
(``budget.SharedBudget`` then goes the process's own pace).

The password never comes from the URI (``storage_uri.problem`` refuses one there) but from the connection's
``rate_limit_storage_password`` extra, passed to redis-py as ``password=``. With Sentinel it is the
password of the master the Sentinels name (``Sentinel.master_for``), the node that holds the budget; the
Sentinels themselves are asked without one, as they are on a private network in the common setups (Bitnami's
chart, Sentinel without ``requirepass``). A Sentinel that asks for a password of its own is not supported.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit


def _hosts(netloc: str) -> list[tuple[str, int]]:
    hosts = []
    for location in netloc.rpartition("@")[2].split(","):
        host, _, port = location.rpartition(":") if location.count(":") == 1 else (location, "", "")
        hosts.append((host, int(port or 6379)))
    return hosts


def redis_client(uri: str, *, timeout: float, password: str | None = None) -> Any:
    """A client for the store at ``uri`` (already checked by ``storage_uri.problem``); connects lazily.

    :param password: the store's (``rate_limit_storage_password``); the URI's ``USERNAME:@``, if any, is
        the ACL user it belongs to.
    """
    import redis

    options: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    parts = urlsplit(uri)
    username = unquote(parts.username) if parts.username else None
    if parts.scheme in ("redis", "rediss"):
        # from_url lets the URI's own options win over keyword ones: the URI has no password to win.
        return redis.Redis.from_url(uri, password=password, **options)
    if parts.scheme == "redis+unix":
        return redis.Redis.from_url(uri.replace("redis+unix://", "unix://", 1), password=password, **options)
    auth: dict[str, Any] = {"username": username, "password": password}
    if parts.scheme == "redis+cluster":
        from redis.cluster import ClusterNode, RedisCluster

        nodes = [ClusterNode(host, port) for host, port in _hosts(parts.netloc)]
        return RedisCluster(startup_nodes=nodes, **auth, **options)
    # redis+sentinel://host:port[,host:port]/service_name: the password is the master's (module docstring).
    from redis.sentinel import Sentinel

    sentinel = Sentinel(_hosts(parts.netloc), sentinel_kwargs=options, **options)
    return sentinel.master_for(parts.path.strip("/"), **auth, **options)
