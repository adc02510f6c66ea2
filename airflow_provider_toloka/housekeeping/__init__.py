"""Keep a whole Toloka account tidy: archive every project that has been idle long enough.

``assess`` decides per project from its listing (pure, built on the cascade's planner), ``run``
goes through the account with bounded concurrency and archives with the cascade, ``report`` turns
the outcomes into the XCom summary and the log table. ``TolokaHousekeepingOperator`` is the task.
"""

from __future__ import annotations

from airflow_provider_toloka.exceptions import TolokaHousekeepingFailed
from airflow_provider_toloka.housekeeping.assess import REASONS, Verdict, assess
from airflow_provider_toloka.housekeeping.report import Report
from airflow_provider_toloka.housekeeping.run import run_housekeeping

__all__ = ["REASONS", "Report", "TolokaHousekeepingFailed", "Verdict", "assess", "run_housekeeping"]
