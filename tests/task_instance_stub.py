"""A stand-in for the task instance in ``context["ti"]`` when a test calls ``execute`` directly.

It records what the task pushes to XCom (``operation_id``, link URLs) so tests can assert on it, and has
the ``stats_tags`` that ``ResumableJobMixin`` reads for its metrics.
"""

from __future__ import annotations


class RecordingTI:
    stats_tags: dict[str, str] = {}  # noqa: RUF012 (read-only)

    def __init__(self) -> None:
        self.pushed: dict[str, object] = {}

    def xcom_push(self, key: str, value: object) -> None:
        self.pushed[key] = value
