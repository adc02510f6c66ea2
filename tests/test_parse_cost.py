"""Parsing a DAG that uses the provider must not pay for the HTTP stack (it loads at run time)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# The shared budget's store client and Airflow's metrics loggers load when a request needs them, never here.
HEAVY = ("requests", "urllib3", "fastapi", "uvicorn", "limits", "redis", "statsd")
# The archive operators' base class ResumableJobMixin and the compat shim that finds it: a few small
# modules, needed to define the class. On Airflow 3.0 and 3.1 ``airflow.sdk`` has not yet imported the
# namespace package ``airflow.providers.common`` (an empty module) that the shim lives in, nor Airflow's
# own ``airflow.sdk.exceptions``, which the shim re-exports.
BASE_CLASS_MODULES = (
    "airflow.sdk.bases.resumablejobmixin",
    "airflow.providers.common",
    "airflow.sdk.exceptions",
)


@pytest.mark.parametrize(
    "module",
    [
        "airflow_provider_toloka.operators.archive",
        "airflow_provider_toloka.operators.housekeeping",
        "airflow_provider_toloka.sensors.operation",
    ],
)
def test_importing_for_a_dag_adds_nothing_heavy(module):
    # Airflow's task SDK itself brings httpx and tenacity; what matters is what this module adds.
    code = f"""
import json, sys
from airflow.sdk import BaseOperator, BaseOperatorLink, BaseSensorOperator
before = set(sys.modules)
import {module}
added = sorted(set(sys.modules) - before)
print(json.dumps({{"added": added, "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    result = json.loads(out.splitlines()[-1])
    assert result["heavy"] == []
    assert [
        m for m in result["added"] if not m.startswith(("airflow_provider_toloka", *BASE_CLASS_MODULES))
    ] == []
