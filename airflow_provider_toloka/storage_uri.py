"""The ``rate_limit_storage_uri`` connection extra: which stores hold a shared budget, and how to show one.

Checked when the connection is read, before any request: a typo here would otherwise surface as a Redis
error in the middle of an archive (or, worse, as a budget nobody shares).

The URI carries no password: Airflow's UI and REST API show an extra in clear unless its name is a
sensitive one, so the store's password has a field of its own, ``rate_limit_storage_password``, which
Airflow redacts on every supported minor with no configuration. A URI with a password in it (``:PASSWORD@``,
a lone ``NAME@`` as old Redis URIs put the password, ``?password=`` or ``?sentinel_password=``) is refused
with the fix. An ACL username stays in the URI, written ``redis://USERNAME:@host``: the colon says "no
password here", which redis-py reads as the username alone. Every way a URI is shown still goes through
``masked``, in case one with a password reaches a message before it is refused.
"""

from __future__ import annotations

import importlib.util
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

# Redis as every Airflow process can reach it (``store.redis_client`` connects to each). ``memory://`` and
# the like are left out on purpose: a budget in one process's memory is what an empty field already gives.
SCHEMES = ("redis", "rediss", "redis+unix", "redis+sentinel", "redis+cluster")
EXAMPLE = "redis://redis.example:6379/0"
# The form field that holds the store's password (``rate_limit_storage_password``).
PASSWORD_FIELD = "rate_limit_storage_password"
PASSWORD_LABEL = "Rate limit storage password"
# Query parameters of a Redis URI that carry a secret (redis-py reads both).
_SECRET_PARAMS = ("password", "sentinel_password")


def masked(uri: str) -> str:
    """The URI with any password replaced by ``***``, for errors and log lines."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return "<unparsable URI>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hosts = netloc.rpartition("@")
        user, colon, secret = userinfo.partition(":")
        # A lone name (``redis://secret@host``) is masked too: old Redis URIs put the password there.
        # ``USERNAME:@`` (no password) is shown as it is.
        netloc = f"{user}:{'***' if secret else ''}@{hosts}" if colon else f"***@{hosts}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if k in _SECRET_PARAMS else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def problem(uri: str) -> str | None:
    """What is wrong with a storage URI, as the fix to make; ``None`` when it can be used."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return f"it is not a URI: give one such as {EXAMPLE}."
    if parts.scheme not in SCHEMES:
        return (
            f"the scheme {parts.scheme + '://' if parts.scheme else '(none)'} is not a shared store: use one "
            f"of {', '.join(s + '://' for s in SCHEMES)}, e.g. {EXAMPLE}."
        )
    secret = _secret_in(parts.netloc, parts.query)
    if secret:
        return (
            f"{secret}: move the password to the {PASSWORD_FIELD} extra (form field "
            f'"{PASSWORD_LABEL}"), which the Airflow UI and REST API mask, and leave it out of the URI, '
            f"e.g. {EXAMPLE} (an ACL username stays, as redis://USERNAME:@host)."
        )
    if parts.scheme == "redis+unix":
        if not parts.path:
            return "give the socket's path, e.g. redis+unix:///run/redis/redis.sock."
    else:
        hosts = parts.netloc.rpartition("@")[2]
        for location in hosts.split(","):
            host, _, port = location.rpartition(":") if location.count(":") == 1 else (location, "", "")
            if not host or (port and not port.isdigit()):
                return f"{location!r} is not host[:port]: give e.g. {EXAMPLE}."
        if "," in hosts and parts.scheme not in ("redis+sentinel", "redis+cluster"):
            return "several hosts need redis+sentinel:// or redis+cluster://."
        if parts.scheme == "redis+sentinel" and not parts.path.strip("/"):
            return "name the Sentinel service, e.g. redis+sentinel://host:26379/mymaster."
        if (
            parts.scheme in ("redis", "rediss")
            and parts.path.strip("/")
            and not parts.path.strip("/").isdigit()
        ):
            return f"the database must be a number, e.g. {EXAMPLE}."
    if importlib.util.find_spec("pyrate_limiter") is None or importlib.util.find_spec("redis") is None:
        return (
            "the shared budget needs the `pyrate-limiter` and `redis` packages: install "
            "airflow-provider-toloka[redis] into every Airflow component (workers and triggerers)."
        )
    return None


def _secret_in(netloc: str, query: str) -> str | None:
    """Where a URI carries a password, said for the fix; ``None`` when it carries none.

    A lone userinfo name counts: redis-py 4+ reads it as a username, older clients (and old
    Redis URIs in the wild) as the password, so whichever was meant it is refused, and the fix shows how
    to write a username unambiguously (``USERNAME:@``).
    """
    userinfo = netloc.rpartition("@")[0] if "@" in netloc else None
    if userinfo is not None:
        user, colon, secret = userinfo.partition(":")
        if secret:
            return "the URI carries a password"
        if user and not colon:
            return "the URI carries a lone name before '@', where old Redis URIs put the password"
    params = [key for key, _value in parse_qsl(query, keep_blank_values=True) if key in _SECRET_PARAMS]
    if params:
        return f"the URI carries {' and '.join(dict.fromkeys(params))}="
    return None
