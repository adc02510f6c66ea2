"""What an Airflow connection of type ``toloka`` means: where to send requests and how to sign them.

Both the synchronous hook and the asynchronous trigger read connections through this one
parser, so the rules (environment names, the loopback-only ``http://`` exception, the auth
scheme) cannot drift apart.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_toloka import __version__, storage_uri
from airflow_provider_toloka.validation import validate_count, validate_seconds

ENVIRONMENTS = {
    "production": "https://toloka.dev",
    "sandbox": "https://sandbox.toloka.dev",
}
# The production UI is documented; the sandbox one is not, hence the ``ui_base_url`` extra.
UI_BASE_URLS = {
    "production": "https://platform.toloka.ai",
    "sandbox": "https://sandbox.toloka.ai",
}
AUTH_SCHEMES = ("OAuth", "ApiKey")
API_PATH = "/api/v1"
USER_AGENT = f"airflow-provider-toloka/{__version__}"
# Seconds to wait for one HTTP answer unless the caller or the connection's ``timeout`` extra says otherwise.
DEFAULT_TIMEOUT = 30.0
# Toloka refuses more than this many requests a second from one account (its API reference, "Rate limits").
MAX_REQUESTS_PER_SECOND = 300.0
# toloka-kit's name for the header that makes a member of a shared account act under it.
ACT_UNDER_ACCOUNT_HEADER = "X-Act-Under-Account-ID"
MAX_ACCOUNT_ID_LENGTH = 128


def _is_loopback(hostname: str) -> bool:
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class TolokaConnectionSettings:
    """A parsed ``toloka`` connection. The token is kept out of ``repr`` so it cannot leak into logs."""

    conn_id: str
    api_url: str
    token: str = field(repr=False)
    auth_scheme: str = "OAuth"
    ui_base_url: str = UI_BASE_URLS["production"]
    max_retries: int | None = None
    timeout: float | None = None
    # None: learn the pace from Toloka's 429s (throttle.SharedThrottle); set: pace from the first request.
    requests_per_second: float | None = None
    act_under_account_id: str | None = None
    # Set: every process on this account draws on one budget held there (``budget.SharedBudget``).
    # Never with a password in it (refused: that has its own extra, below); out of ``repr`` all the same.
    rate_limit_storage_uri: str | None = field(default=None, repr=False)
    # The store's password: an extra of its own, whose name Airflow's UI and REST API redact.
    rate_limit_storage_password: str | None = field(default=None, repr=False)

    @property
    def authorization(self) -> str:
        return f"{self.auth_scheme} {self.token}"

    @property
    def headers(self) -> dict[str, str]:
        """What every request carries, from the sync hook and the async trigger alike."""
        headers = {
            "Authorization": self.authorization,
            "User-Agent": USER_AGENT,
            "Accept": "application/json",
        }
        if self.act_under_account_id:
            headers[ACT_UNDER_ACCOUNT_HEADER] = self.act_under_account_id
        return headers

    def scrub(self, text: str) -> str:
        """Hide the token and the store's password should a server or proxy echo one into an answer."""
        text = text.replace(self.token, "***")
        password = self.rate_limit_storage_password
        return text.replace(password, "***") if password else text

    @classmethod
    def from_connection(cls, conn: Any, *, extra: dict[str, Any] | None = None) -> TolokaConnectionSettings:
        """Build settings from an ``airflow.sdk.Connection`` (or anything with the same attributes).

        :param extra: the connection's parsed extra; pass ``await conn.aextra_dejson()`` inside an
            event loop, where the synchronous ``conn.extra_dejson`` must not be called.
        """
        conn_id = conn.conn_id
        if extra is None:
            extra = conn.extra_dejson
        extra = extra or {}

        bad = _refusal(conn_id)
        token = (conn.password or "").strip()
        if not token:
            raise ValueError(
                f"Toloka connection {conn_id!r} has no token: put the OAuth token or API key in the "
                "connection's password field (labelled 'API token' in the UI)."
            )

        scheme = extra.get("auth_scheme") or "OAuth"
        if scheme not in AUTH_SCHEMES:
            raise bad("extra.auth_scheme", scheme, "use 'OAuth' for OAuth tokens or 'ApiKey' for API keys.")

        root, ui_default = _roots(conn, extra, bad)

        max_retries = extra.get("max_retries")
        timeout = extra.get("timeout")
        try:
            if max_retries is not None:
                max_retries = validate_count("max_retries", int(max_retries))
        except (TypeError, ValueError):
            raise bad("extra.max_retries", max_retries, "pass a whole number >= 0, e.g. 5.") from None
        try:
            if timeout is not None:
                timeout = validate_seconds("timeout", float(timeout))
        except (TypeError, ValueError):
            raise bad("extra.timeout", timeout, "pass a positive number of seconds, e.g. 30.") from None
        requests_per_second = _requests_per_second(extra.get("requests_per_second"), bad)
        storage = _rate_limit_storage_uri(extra.get("rate_limit_storage_uri"), requests_per_second, bad)
        storage_password = _rate_limit_storage_password(extra.get(storage_uri.PASSWORD_FIELD), storage, bad)

        return cls(
            conn_id=conn_id,
            act_under_account_id=_parse_account_id(extra.get("act_under_account_id"), bad),
            api_url=root + API_PATH,
            token=token,
            auth_scheme=scheme,
            ui_base_url=str(extra.get("ui_base_url") or ui_default).rstrip("/"),
            max_retries=max_retries,
            timeout=timeout,
            requests_per_second=requests_per_second,
            rate_limit_storage_uri=storage,
            rate_limit_storage_password=storage_password,
        )


def api_root(conn: Any) -> str:
    """The API's URL root a connection points at (its host, else its environment's), token or not.

    What a ``toloka://`` asset URI carries (``assets.toloka_asset_uri``), checked as the hook checks it.
    """
    return _roots(conn, conn.extra_dejson or {}, _refusal(conn.conn_id))[0]


def _roots(conn: Any, extra: dict[str, Any], bad: Any) -> tuple[str, str]:
    """The API's URL root and the web UI's default root: the host override, else the environment's."""
    environment = extra.get("environment") or "production"
    if environment not in ENVIRONMENTS:
        raise bad("extra.environment", environment, "use 'production' or 'sandbox'.")
    if conn.host:
        root = _parse_host(conn.host, conn.port, bad)
        return root, root
    return ENVIRONMENTS[environment], UI_BASE_URLS[environment]


def _refusal(conn_id: str) -> Any:
    """The error for a connection field that is not valid, naming the connection, field, value and fix."""

    def bad(field_name: str, value: Any, fix: str) -> ValueError:
        return ValueError(f"Toloka connection {conn_id!r}: {field_name}={value!r} is not valid: {fix}")

    return bad


def _requests_per_second(value: Any, bad: Any) -> float | None:
    """The declared pace: empty (forms save ``""``) means unset; else a number in (0, 300]."""
    if value is None or value == "":
        return None
    fix = (
        f"pass the requests a second this connection may send, above 0 and at most "
        f"{MAX_REQUESTS_PER_SECOND:g} (Toloka's limit per account), e.g. 100; or leave it empty to "
        "learn the pace from Toloka's 429 answers."
    )
    try:
        rate = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        raise bad("extra.requests_per_second", value, fix) from None
    if not (0 < rate <= MAX_REQUESTS_PER_SECOND):  # NaN fails every comparison, inf the second
        raise bad("extra.requests_per_second", value, fix)
    return rate


def _rate_limit_storage_uri(value: Any, rate: float | None, bad: Any) -> str | None:
    """The shared budget's store; empty means none (each process keeps its own pace).

    Refused with the value's password masked (``storage_uri.masked``), refused with a password in it
    (``storage_uri.problem``: it goes in ``rate_limit_storage_password``), and refused without
    ``requests_per_second``: a shared budget needs its size.
    """
    if value is None or value == "":
        return None
    name = "extra.rate_limit_storage_uri"
    if not isinstance(value, str):
        raise bad(name, value, f"give the store as a URI string, e.g. {storage_uri.EXAMPLE!r}.")
    uri = value.strip()
    shown = storage_uri.masked(uri)
    if rate is None:
        raise bad(
            name,
            shown,
            "a shared budget needs its size: set extra.requests_per_second too (the account's limit, or "
            "the share of it these connections may use, e.g. 100), or leave rate_limit_storage_uri empty.",
        )
    fix = storage_uri.problem(uri)
    if fix is not None:
        raise bad(name, shown, fix)
    return uri


def _rate_limit_storage_password(value: Any, uri: str | None, bad: Any) -> str | None:
    """The store's password; empty (forms save ``""``) means the store asks for none.

    Never shown, not even in its own refusal (``***`` stands for it). Refused without
    ``rate_limit_storage_uri``: a password for no store is a half-made setting, and silently ignoring it
    would leave the user believing the budget is shared.
    """
    if value is None or value == "":
        return None
    name = f"extra.{storage_uri.PASSWORD_FIELD}"
    if not isinstance(value, str):
        raise bad(name, "***", "give the store's password as a string, or leave it empty.")
    if uri is None:
        raise bad(
            name,
            "***",
            "it is the password of the store in extra.rate_limit_storage_uri, which is empty: set the "
            f"store too (e.g. {storage_uri.EXAMPLE}), or leave {storage_uri.PASSWORD_FIELD} empty.",
        )
    # Airflow already redacts this extra by its name, in task logs too; told here as well, so the masking
    # does not hang on how (or through which minor's code path) the connection was read.
    from airflow.providers.common.compat.sdk import mask_secret

    mask_secret(value)
    return value


def _parse_account_id(value: Any, bad: Any) -> str | None:
    """The shared account to act under; ``None`` (the token's own) when unset or ``""`` (as forms save it).

    Checked before any request: a stray space or newline would otherwise reach Toloka as part of a header
    (or be refused by the HTTP library with a message that names neither the field nor the fix).
    """
    if value is None or value == "":
        return None
    name = "extra.act_under_account_id"
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise bad(name, value, 'give the account id as a string, e.g. "a1b2c3", or leave it empty.')
    if len(value) > MAX_ACCOUNT_ID_LENGTH:
        raise bad(
            name,
            f"{value[:20]}...",
            f"it is {len(value)} characters long, over {MAX_ACCOUNT_ID_LENGTH}: paste only the account id.",
        )
    if any(char.isspace() for char in value):
        raise bad(name, value, "it contains whitespace: remove the spaces, tabs or line breaks in it.")
    if any(not char.isprintable() for char in value):
        raise bad(name, value, "it contains control characters: paste only the account id.")
    if not value.isascii():
        raise bad(name, value, "an HTTP header carries ASCII only: paste the account id as Toloka shows it.")
    return value


def _parse_host(host: str, port: int | None, bad: Any) -> str:
    """Turn the host override into a URL root; plain ``http://`` only to this machine."""
    raw = host.strip()
    parts = urlsplit(raw if "://" in raw else f"//{raw}")
    hostname = parts.hostname
    try:
        port = parts.port or port
    except ValueError:
        raise bad("host", host, "the port is not a number.") from None
    if not hostname or parts.query or parts.fragment or parts.username or parts.password:
        raise bad("host", host, "give a URL root such as https://toloka.dev or http://127.0.0.1:8765.")
    scheme = parts.scheme or ("http" if _is_loopback(hostname) else "https")
    if scheme not in ("http", "https"):
        raise bad("host", host, "use an https:// URL.")
    if scheme == "http" and not _is_loopback(hostname):
        raise bad(
            "host",
            host,
            "plain http:// would send the token unencrypted; use https:// (http:// is only "
            "allowed for loopback addresses such as the local emulator).",
        )
    netloc = f"[{hostname}]" if ":" in hostname else hostname
    if port:
        netloc += f":{port}"
    path = parts.path.rstrip("/").removesuffix(API_PATH)
    return f"{scheme}://{netloc}{path}"
