"""Run the fault matrix of ``tests/reliability/test_fault_matrix.py`` and print what it left behind.

    .venv/bin/python benchmarks/fault_report.py

Every fault (429 with and without Retry-After, 500, 502, 503, 504, connection reset, lost answer, read
time-out, slow answer) is injected on the archive request, on the operation polls and on both, for each
of the three archive operators: twice per request (within the retry budget of 3 retries) and, on the
archive request and on the polls, four times (past it: the archive request gives up, the polls of the
running operation wait it out). One row per fault:

- tasks: archive tasks run; ok: ended with the object archived; gave up: failed naming fault and attempts
- faults injected: requests answered with the fault (each is used up by one request)
- lost: a task that reported success without the object ARCHIVED, or an object left in any state other
  than ARCHIVED or where it was (must be 0)
- duplicates: objects with more than one archive operation in Toloka (must be 0)
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="toloka-bench-airflow-"))
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")

TESTS = Path(__file__).resolve().parent.parent / "tests"
MATRIX = TESTS / "reliability" / "test_fault_matrix.py"
# The matrix imports the shared test helpers the way pytest does (pyproject's pythonpath = ["tests"]).
sys.path.insert(0, str(TESTS))


def load_matrix():
    spec = importlib.util.spec_from_file_location("fault_matrix", MATRIX)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def main() -> int:
    # The tasks' own log lines (structlog, straight to file descriptor 1) would drown the table.
    stdout = os.dup(1)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    matrix = load_matrix()
    from airflow_provider_toloka.emulator.server import TolokaEmulator

    rows: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    unexpected: list[str] = []
    with TolokaEmulator() as emu:
        for fault in matrix.FAULTS:
            for operator in matrix.OPERATORS:
                for target in matrix.TARGETS:
                    for over in (False, True):
                        if over and (target == "both" or matrix.FAULTS[fault][1] is None):
                            continue
                        outcome = matrix.run_case(emu, operator, fault, target, over_budget=over)
                        row = rows[fault]
                        row["tasks"] += 1
                        row["ok" if outcome.error is None else "gave up"] += 1
                        row["faults injected"] += outcome.faults_injected
                        row["lost"] += outcome.lost
                        row["duplicates"] += outcome.duplicated
                        # Past the budget only a request that starts something gives up; polls of a
                        # running operation wait the outage out.
                        gives_up = over and target == "archive POST"
                        if (outcome.error is not None) != gives_up:
                            unexpected.append(
                                f"{fault} / {operator} / {target} / over={over}: {outcome.error}"
                            )

    sys.stdout.flush()
    os.dup2(stdout, 1)
    columns = ["tasks", "ok", "gave up", "faults injected", "lost", "duplicates"]
    print(f"{'fault':<24}" + "".join(f"{c:>16}" for c in columns))
    totals: dict[str, int] = defaultdict(int)
    for fault, row in rows.items():
        print(f"{fault:<24}" + "".join(f"{row[c]:>16}" for c in columns))
        for c in columns:
            totals[c] += row[c]
    print(f"{'total (' + str(len(rows)) + ' faults)':<24}" + "".join(f"{totals[c]:>16}" for c in columns))
    for line in unexpected:
        print("UNEXPECTED:", line)
    return 1 if totals["lost"] or totals["duplicates"] or unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
