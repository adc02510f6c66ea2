"""DAG parse cost: 50 Toloka archive tasks against 50 EmptyOperators, side by side in one run.

Each parse runs in a fresh interpreter (what a DAG processor pays for a new file), so the cost of
imports is counted. Prints the median of many runs for each DAG.

    .venv/bin/python benchmarks/bench_parse.py [repetitions]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TASKS = 50
DAG = """
from airflow.sdk import DAG
{import_line}

with DAG("bench_{name}", schedule=None):
    for i in range({tasks}):
        {operator}
"""
VARIANTS = {
    "EmptyOperator": (
        "from airflow.providers.standard.operators.empty import EmptyOperator",
        'EmptyOperator(task_id=f"t{i}")',
    ),
    "TolokaArchivePoolOperator": (
        "from airflow_provider_toloka.operators.archive import TolokaArchivePoolOperator",
        'TolokaArchivePoolOperator(task_id=f"t{i}", pool_id=str(1000 + i))',
    ),
}
PARSE = "import runpy, sys; runpy.run_path(sys.argv[1])"


def parse_once(path: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", PARSE, str(path)], check=True)
    return time.perf_counter() - start


def main() -> None:
    repetitions = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    with tempfile.TemporaryDirectory() as folder:
        files = {}
        for name, (import_line, operator) in VARIANTS.items():
            files[name] = Path(folder) / f"{name}.py"
            files[name].write_text(
                DAG.format(import_line=import_line, name=name, tasks=TASKS, operator=operator)
            )
        times: dict[str, list[float]] = {name: [] for name in files}
        for _ in range(repetitions):  # interleaved, so machine load hits both alike
            for name, path in files.items():
                times[name].append(parse_once(path))
    base = statistics.median(times["EmptyOperator"])
    print(f"DAG with {TASKS} tasks, fresh interpreter per parse, median of {repetitions}")
    print(f"{'operator':<28}{'median s':>10}{'min s':>9}{'vs Empty':>10}")
    for name, runs in times.items():
        median = statistics.median(runs)
        print(f"{name:<28}{median:>10.3f}{min(runs):>9.3f}{median / base - 1:>+10.1%}")


if __name__ == "__main__":
    main()
