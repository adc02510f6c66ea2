"""Toloka objects as Airflow assets: ``toloka://<api host>/{projects|pools|trainings}/<id>``.

Airflow calls :func:`normalize_toloka_uri` (registered under ``asset-uris`` in ``get_provider_info``) for
every ``Asset("toloka://...")``, so two spellings of one object are one asset, and a misspelt URI fails
when the DAG is parsed instead of silently never matching. :func:`toloka_asset_uri` builds the URI from a
connection, so a DAG author never spells it by hand.

The archive operators, the cascade and housekeeping learn which objects they archived only at run time,
so they report them through one asset alias (:data:`TOLOKA_ARCHIVE_ALIAS`) that the operators add to
their own ``outlets``: :func:`record_archived` turns each archived object into an event of its asset.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, urlsplit

import pendulum

if TYPE_CHECKING:
    from airflow.providers.common.compat.openlineage.facet import Dataset as OpenLineageDataset
    from airflow.providers.common.compat.sdk import Context
    from airflow.sdk import Asset

SCHEME = "toloka"
# Every archive task's alias; a DAG may also be scheduled on ``AssetAlias(TOLOKA_ARCHIVE_ALIAS)`` itself.
TOLOKA_ARCHIVE_ALIAS = "toloka_archive"
KINDS = {"project": "projects", "pool": "pools", "training": "trainings"}
HOSTS = {"toloka.dev": "production", "sandbox.toloka.dev": "sandbox"}
_DEFAULT_PORTS = (80, 443)
_ID = re.compile(r"[0-9]+")
_SHAPE = "toloka://<api host>/{projects|pools|trainings}/<numeric id>, e.g. toloka://toloka.dev/projects/1003"


def normalize_toloka_uri(parts: SplitResult) -> SplitResult:
    """Airflow's ``asset-uris`` handler: lower-case host, no default port; refuse any other shape."""

    def bad(why: str) -> ValueError:
        return ValueError(f"Toloka asset URI {parts.geturl()!r} is not valid: {why}. Expected {_SHAPE}.")

    try:
        hostname, port = parts.hostname, parts.port
    except ValueError:
        raise bad("the port is not a number") from None
    if not hostname:
        raise bad("it has no host")
    if parts.username or parts.password:
        raise bad("it carries user info")
    if parts.query:
        raise bad("it has a query")
    segments = parts.path.strip("/").split("/") if parts.path.strip("/") else []
    if not segments:
        raise bad("the path is empty")
    if segments[0] not in KINDS.values():
        raise bad(f"the kind {segments[0]!r} is none of projects, pools, trainings")
    if len(segments) < 2 or not segments[1]:
        raise bad("the id is empty")
    if len(segments) > 2:
        raise bad(f"extra path segments after the id: {'/'.join(segments[2:])!r}")
    if not _ID.fullmatch(segments[1]):
        raise bad(f"the id {segments[1]!r} is not a number")
    netloc = f"[{hostname}]" if ":" in hostname else hostname
    if port is not None and port not in _DEFAULT_PORTS:
        netloc += f":{port}"
    return SplitResult(SCHEME, netloc, f"/{segments[0]}/{segments[1]}", "", "")


def create_asset(
    *, api_url: str, kind: str, object_id: str | int, extra: dict[str, Any] | None = None
) -> Asset:
    """Airflow's ``asset-uris`` factory: the asset of one object, for hook-level lineage.

    Airflow's hook lineage collector calls it for ``scheme="toloka"`` with the ``asset_kwargs`` a hook
    reports (``api_url``, ``kind``, ``object_id``), so lineage names an object by the same URI as the
    asset events of :func:`record_archived`.
    """
    from airflow.sdk import Asset

    return Asset(uri=uri_for(api_url, kind, object_id), extra=extra)


def convert_asset_to_openlineage(asset: Asset, lineage_context: Any) -> OpenLineageDataset:
    """Airflow's ``asset-uris`` OpenLineage converter: ``toloka://toloka.dev/projects/1003`` becomes
    namespace ``toloka://toloka.dev``, name ``projects/1003``.

    That is OpenLineage's naming for any store with a host (as for ``s3://bucket`` + key). The
    OpenLineage provider calls it; it is imported here only when called, as the official providers do,
    because neither it nor the OpenLineage client is a dependency of this provider.
    """
    from airflow.providers.common.compat.openlineage.facet import Dataset as OpenLineageDataset

    parts = normalize_toloka_uri(urlsplit(asset.uri))
    return OpenLineageDataset(namespace=f"{SCHEME}://{parts.netloc}", name=parts.path.lstrip("/"))


def api_host(api_url: str) -> str:
    """The ``host[:port]`` of a connection's API URL, as the asset URI carries it."""
    parts = urlsplit(api_url)
    host = (parts.hostname or "").lower()
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None and parts.port not in _DEFAULT_PORTS:
        netloc += f":{parts.port}"
    return netloc


def uri_for(api_url: str, kind: str, object_id: str | int) -> str:
    """The asset URI of one object on the API at ``api_url``; refuses what the normalizer refuses."""
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is not valid: use one of {', '.join(KINDS)}.")
    uri = f"{SCHEME}://{api_host(api_url)}/{KINDS[kind]}/{object_id}"
    return normalize_toloka_uri(urlsplit(uri)).geturl()


def toloka_asset_uri(kind: str, object_id: str | int, *, toloka_conn_id: str = "toloka_default") -> str:
    """The asset URI of a Toloka object on the connection's API, e.g. ``toloka://toloka.dev/projects/1003``.

    Reads the connection (not its token) when called: in a DAG file that is at parse time, like any
    connection lookup there. Schedule on it with ``schedule=[Asset(toloka_asset_uri("project", 1003))]``.
    """
    from airflow.providers.common.compat.sdk import BaseHook

    from airflow_provider_toloka.connection import api_root

    root = api_root(BaseHook.get_connection(toloka_conn_id))
    return uri_for(root, kind, object_id)


def environment_of(api_url: str) -> str:
    """``production``, ``sandbox``, or the host of another endpoint (such as the emulator)."""
    host = api_host(api_url)
    return HOSTS.get(host, host)


def archive_alias() -> Any:
    """The ``AssetAlias`` every archive task reports through (added to its outlets by the operators)."""
    from airflow.sdk import AssetAlias

    return AssetAlias(name=TOLOKA_ARCHIVE_ALIAS)


def add_archive_alias(operator: Any) -> None:
    """Make the alias one of the operator's ``outlets``: Airflow keeps alias events only from its outlets."""
    alias = archive_alias()
    outlets = list(operator.outlets or [])
    if alias not in outlets:
        operator.outlets = [*outlets, alias]


def record_archived(
    context: Context,
    api_url: str,
    objects: Iterable[tuple[str, str, str | None]],
) -> int:
    """Add an asset event for each ``(kind, id, operation id or None)`` archived; return how many.

    "Already archived" (a 204, or skipped by a plan) is recorded too: the object is archived, and a
    DAG waiting on it should run. Airflow emits the events only if the task succeeds. A context
    without ``outlet_events`` (``execute`` called by hand, outside Airflow's task runner) records none.
    """
    from airflow.sdk import Asset

    outlet_events = context.get("outlet_events")
    if outlet_events is None:
        return 0
    accessor = outlet_events[archive_alias()]
    environment = environment_of(api_url)
    when = pendulum.now("UTC").isoformat()
    count = 0
    for kind, object_id, operation_id in objects:
        extra: dict[str, Any] = {
            "kind": kind,
            "id": str(object_id),
            "operation_id": operation_id,
            "environment": environment,
            "archived_at": when,
        }
        accessor.add(Asset(uri_for(api_url, kind, object_id)), extra=extra)
        count += 1
    return count


def cascade_objects(summary: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    """The ``(kind, id, operation id)`` a successful cascade's summary says are archived."""
    operations: dict[str, str] = summary.get("operations") or {}
    objects: list[tuple[str, str, str | None]] = []
    for kind in ("pool", "training"):
        part = summary.get(f"{kind}s") or {}
        for object_id in [*part.get("archived", []), *part.get("skipped", [])]:
            objects.append((kind, str(object_id), operations.get(f"{kind} {object_id}")))
    project = summary.get("project") or {}
    if project.get("id") is not None:
        operation = project.get("operation") or {}
        objects.append(("project", str(project["id"]), operation.get("id")))
    return objects
