"""Loading a whole world from a JSON seed file, so demos and tests start from a known set of objects.

A seed is ``{"projects": [...], "pools": [...], "trainings": [...]}``; each entry takes the keyword
arguments of ``add_project``/``add_pool``/``add_training``, with ``last_rejection``, ``created``,
``last_started`` and ``last_stopped`` as ISO date-times (UTC when naive).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from airflow_provider_toloka.emulator.state import EmulatorState

SEED_DIR = Path(__file__).with_name("seeds")


def resolve_seed(seed: str | Path) -> Path:
    """A packaged seed by name (``"demo"``) or a path to a JSON file."""
    packaged = SEED_DIR / f"{seed}.json"
    if isinstance(seed, str) and packaged.is_file():
        return packaged
    path = Path(seed)
    if not path.is_file():
        names = ", ".join(sorted(p.stem for p in SEED_DIR.glob("*.json")))
        raise FileNotFoundError(f"Seed {str(seed)!r} is neither a packaged seed ({names}) nor a JSON file")
    return path


def load_seed(state: EmulatorState, seed: str | Path) -> None:
    """Add every object of the seed to ``state``; objects with the same ids are replaced."""
    path = resolve_seed(seed)
    load_seed_data(state, json.loads(path.read_text(encoding="utf-8")), path)


def load_seed_data(state: EmulatorState, data: Any, path: Path | str = "seed") -> None:
    """``load_seed`` for a seed already read (e.g. the body of ``POST /_emulator/seed``)."""
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a seed is a JSON object with projects, pools, trainings")
    unknown = set(data) - {"projects", "pools", "trainings"}
    if unknown:
        raise ValueError(
            f"{path}: unknown top-level keys {sorted(unknown)}; expected projects, pools, trainings"
        )
    for entry in data.get("projects", []):
        _add(path, state.add_project, _with_times(entry, ("created",)))
    for entry in data.get("pools", []):
        _add(path, state.add_pool, _with_times(entry, ("last_rejection", *_LIFECYCLE)))
    for entry in data.get("trainings", []):
        _add(path, state.add_training, _with_times(entry, _LIFECYCLE))


_LIFECYCLE = ("created", "last_started", "last_stopped")


def _with_times(entry: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """The entry with its ISO date-time strings parsed (UTC when naive)."""
    return {**entry, **{name: _parse_time(entry[name]) for name in names if name in entry}}


def _add(path: Path | str, add: Any, entry: dict[str, Any]) -> None:
    fields = dict(entry)
    object_id = fields.pop("id", None)
    try:
        add(object_id, **fields)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: cannot load {entry!r}: {exc}") from exc


def _parse_time(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    parsed = dt.datetime.fromisoformat(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)
