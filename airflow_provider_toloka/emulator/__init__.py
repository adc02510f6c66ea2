"""A local Toloka API emulator for tests and demos, in the spirit of ``moto`` for AWS.

``TolokaEmulator`` serves Toloka's archive, close, read, list and operations endpoints from memory, with
operations that move PENDING -> RUNNING -> SUCCESS/FAIL on the clock, and knobs for faults, latency and
rate limits. ``README.md`` beside this file lists its rules and what it assumes where Toloka is silent.

Importing this package is cheap: FastAPI and uvicorn load only when ``TolokaEmulator`` is first touched,
so the pytest plugin costs nothing in test runs that never use it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_toloka.emulator.requestlog import RequestRecord
    from airflow_provider_toloka.emulator.server import TolokaEmulator

__all__ = ["RequestRecord", "TolokaEmulator"]


def __getattr__(name: str) -> Any:
    if name == "TolokaEmulator":
        from airflow_provider_toloka.emulator.server import TolokaEmulator

        return TolokaEmulator
    if name == "RequestRecord":
        from airflow_provider_toloka.emulator.requestlog import RequestRecord

        return RequestRecord
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
