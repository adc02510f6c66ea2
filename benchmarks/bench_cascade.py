"""Cascade archive vs the naive loop, on a project of 1000 pools and 50 trainings under a rate limit.

    .venv/bin/python benchmarks/bench_cascade.py [--concurrency 128] [--naive-pools 100] [--repeat 3]

Each run gets a fresh emulator in its own process (so the emulator's event loop and the client's
threads do not share a GIL), seeded with 1000 closed pools and 50 closed trainings each linked to
20 of them; 20 ms latency per request, operations take 0.5 s, 100 requests a second before 429.

- cascade: ``TolokaArchiveProjectOperator(cascade=True)``, the whole project; each training starts
  as soon as the pools linked to it are archived (the link read from each pool's
  ``quality_control.training_requirement.training_pool_id``).
- cascade, declared rate: the same, with the connection's ``requests_per_second`` at the limit, so the
  workers keep to it from the first request instead of learning it from the first burst's 429s. Its
  table sets it beside today's run against the floor: one request per object at the rate.
- cascade, trainings forced after every pool: the same operator with the old phase order (every
  training waits for every pool), to show what the earlier training start buys, side by side. (Once
  the cascade keeps to a pace, learned or declared, it sends trainings after the pools ready to go.)
- threads + per-object wait: the same thread pool and shared throttle, but each worker polls its
  own operation with ``hook.wait_for_operation`` (what the cascade would do without the watcher).
- naive: one pool at a time, archive then poll every second until done, as toloka-kit's
  ``archive_pool`` does. Too slow to run in full: it runs the first ``--naive-pools`` pools and
  extrapolates per object to all 1051 objects (labelled as such).

Requests are counted on the client (every answer, 429s included). The lower bound is the archive
requests needed (one per object) plus the list pages, divided by the rate limit.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="toloka-bench-airflow-"))

POOLS, TRAININGS, POOLS_PER_TRAINING = 1000, 50, 20
LATENCY, OPERATION_DURATION, RATE_LIMIT = 0.02, 0.5, 100.0
CHAIN = 3  # operations that must run one after another at the end: last pool, its training, the project
PROJECT = "1"


def write_seed(directory: Path) -> Path:
    pools = [{"id": str(10_000 + i), "project_id": PROJECT, "status": "CLOSED"} for i in range(POOLS)]
    trainings = [
        {
            "id": str(50_000 + t),
            "project_id": PROJECT,
            "status": "CLOSED",
            "linked_pool_ids": [
                p["id"] for p in pools[t * POOLS_PER_TRAINING : (t + 1) * POOLS_PER_TRAINING]
            ],
        }
        for t in range(TRAININGS)
    ]
    path = directory / "bench-seed.json"
    path.write_text(json.dumps({"projects": [{"id": PROJECT}], "pools": pools, "trainings": trainings}))
    return path


@contextmanager
def emulator(seed: Path, requests_per_second: float | None = None) -> Iterator[str]:
    """A fresh emulator process; yields its base URL. The connection declares ``requests_per_second``."""
    command = [
        sys.executable, "-m", "airflow_provider_toloka.emulator", "--port", "0", "--seed", str(seed),
        "--operation-duration", str(OPERATION_DURATION), "--rate-limit", str(RATE_LIMIT),
        "--latency", str(LATENCY),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        url = line.split("serving ", 1)[1].split("/api/v1", 1)[0]
        extra: dict[str, Any] = {"auth_scheme": "OAuth"}
        if requests_per_second is not None:
            extra["requests_per_second"] = requests_per_second
        os.environ["AIRFLOW_CONN_TOLOKA_DEFAULT"] = json.dumps(
            {"conn_type": "toloka", "host": url, "password": "test-token", "extra": extra}
        )
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


class Answers(Counter[int]):
    """Answers by status, and when each 429 arrived (``time.monotonic``)."""

    refused_at: list[float]


def counted(hook: Any) -> Answers:
    """Count every answer the hook's session receives, by status."""
    statuses = Answers()
    statuses.refused_at = []

    def count(response: Any, *args: Any, **kwargs: Any) -> None:
        statuses.update([response.status_code])
        if response.status_code == 429:
            statuses.refused_at.append(time.monotonic())

    hook.get_conn().hooks["response"].append(count)
    return statuses


class _TI:
    def xcom_push(self, key: str, value: object) -> None:
        pass


def run_cascade(
    concurrency: int, phased: bool = False, declared: bool = False
) -> tuple[Counter[int], int, str]:
    from airflow_provider_toloka.cascade import execute
    from airflow_provider_toloka.cascade.steps import build_steps
    from airflow_provider_toloka.operators.archive import TolokaArchiveProjectOperator

    def phased_steps(plan: Any) -> dict[Any, set[Any]]:
        """The order before: no training starts before every pool is archived."""
        needs = build_steps(plan)
        pools = {step for step in needs if step.action == "archive" and step.kind == "pool"}
        for step, required in needs.items():
            if step.action == "archive" and step.kind == "training":
                required |= pools
        return needs

    operator = TolokaArchiveProjectOperator(
        task_id="bench", project_id=PROJECT, cascade=True, max_concurrency=concurrency
    )
    statuses = counted(operator.hook)
    execute.build_steps = phased_steps if phased else build_steps  # type: ignore[assignment]
    try:
        summary = operator.execute({"ti": _TI()})  # type: ignore[arg-type]
    finally:
        execute.build_steps = build_steps  # type: ignore[assignment]
    done = len(summary["pools"]["archived"]) + len(summary["trainings"]["archived"]) + 1
    if declared:
        return statuses, done, f"cascade {concurrency}, declared rate {RATE_LIMIT:g}/s"
    # Unphased, the cascade starts each training as its pools finish until a 429 teaches it a pace; from
    # then on trainings wait for the pools ready to send (``CascadeRunner._goes_last``).
    order = "trainings forced after every pool" if phased else "pace learned from 429s"
    return statuses, done, f"cascade {concurrency}, {order}"


def run_threads_per_object_wait(concurrency: int) -> tuple[Counter[int], int, str]:
    from airflow_provider_toloka.hooks.toloka import TolokaHook
    from airflow_provider_toloka.throttle import SharedThrottle

    hook = TolokaHook(throttle=SharedThrottle())
    statuses = counted(hook)

    def archive(kind: str, object_id: str) -> None:
        operation = hook.archive(kind, object_id)  # type: ignore[arg-type]
        if operation is not None:
            hook.wait_for_operation(operation["id"], poll_interval=10)

    pools = [p["id"] for p in hook.list_pools(PROJECT)]
    trainings = [t["id"] for t in hook.list_trainings(PROJECT)]
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda i: archive("pool", i), pools))
        list(pool.map(lambda i: archive("training", i), trainings))
    archive("project", PROJECT)
    return statuses, len(pools) + len(trainings) + 1, f"threads + per-object wait, {concurrency} threads"


def run_naive(limit: int) -> tuple[Counter[int], int, str]:
    from airflow_provider_toloka.hooks.toloka import TolokaHook
    from airflow_provider_toloka.operation_status import is_terminal

    hook = TolokaHook()
    statuses = counted(hook)
    pools = [p["id"] for p in hook.list_pools(PROJECT)][:limit]
    for pool_id in pools:
        operation = hook.archive_pool(pool_id)
        while operation is not None and not is_terminal(operation):
            time.sleep(1.0)
            operation = hook.get_operation(operation["id"])
    return statuses, len(pools), f"naive loop, first {limit} pools"


Run = Callable[[], tuple[Counter[int], int, str]]


def measure(run: Run, seed: Path, requests_per_second: float | None = None) -> dict[str, Any]:
    with emulator(seed, requests_per_second):
        started = time.monotonic()
        statuses, objects, label = run()
        wall = time.monotonic() - started
    refused_at = getattr(statuses, "refused_at", [])
    late = sum(1 for at in refused_at if at > started + 1.0)
    return {"label": label, "wall": wall, "statuses": statuses, "objects": objects, "late_429s": late}


def main() -> None:
    # Imported before any clock starts: a worker running the task has Airflow loaded already.
    from airflow_provider_toloka.operators.archive import DEFAULT_MAX_CONCURRENCY

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--concurrency",
        default=str(DEFAULT_MAX_CONCURRENCY),
        help=f"comma-separated max_concurrency values (default {DEFAULT_MAX_CONCURRENCY}, the operator's)",
    )
    parser.add_argument(
        "--naive-pools", type=int, default=100, help="pools the naive loop runs (default 100)"
    )
    parser.add_argument("--skip-per-object", action="store_true", help="skip the per-object-wait variant")
    parser.add_argument(
        "--repeat", type=int, default=1, help="rounds of every variant; the fastest of each is shown"
    )
    parser.add_argument(
        "--skip-phased", action="store_true", help="skip the old order (trainings after every pool)"
    )
    parser.add_argument("--skip-naive", action="store_true", help="skip the naive loop")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    total_objects = POOLS + TRAININGS + 1
    needed = total_objects + math.ceil(POOLS / 300) + math.ceil(TRAININGS / 300) + 1
    bound = needed / RATE_LIMIT
    runs: list[tuple[Run, float | None]] = []
    for value in args.concurrency.split(","):
        runs.append((lambda c=int(value): run_cascade(c), None))
        runs.append((lambda c=int(value): run_cascade(c, declared=True), RATE_LIMIT))
        if not args.skip_phased:
            runs.append((lambda c=int(value): run_cascade(c, phased=True), None))
        if not args.skip_per_object:
            runs.append((lambda c=int(value): run_threads_per_object_wait(c), None))
    if not args.skip_naive:
        runs.append((lambda: run_naive(args.naive_pools), None))

    with tempfile.TemporaryDirectory() as directory:
        seed = write_seed(Path(directory))
        # Rounds interleave the variants, so a busy moment of the machine hits them alike; the fastest
        # round of each is reported (noise only ever adds time).
        rounds = [[measure(run, seed, rate) for run, rate in runs] for _ in range(args.repeat)]
        results = [min(tries, key=lambda result: result["wall"]) for tries in zip(*rounds, strict=True)]

    print(
        f"\n{POOLS} pools + {TRAININGS} trainings + 1 project; latency {LATENCY * 1000:g} ms, operations "
        f"{OPERATION_DURATION:g} s, limit {RATE_LIMIT:g} req/s"
    )
    print(
        f"lower bound: {needed} requests ({total_objects} archives + list/read pages) "
        f"/ {RATE_LIMIT:g} = {bound:.1f} s\n"
    )
    header = f"{'approach':<48} {'objects':>7} {'wall s':>8} {'requests':>8} {'429s':>5} {'x bound':>7}"
    print(header)
    print("-" * len(header))
    cascade_wall = None
    by_label = {result["label"]: result["wall"] for result in results}
    for result in results:
        requests = sum(result["statuses"].values())
        refused = result["statuses"][429]
        wall = result["wall"]
        print(
            f"{result['label']:<48} {result['objects']:>7} {wall:>8.1f} {requests:>8} {refused:>5} "
            f"{wall / bound:>7.2f}"
        )
        if result["label"].startswith("cascade") and cascade_wall is None:
            cascade_wall = wall
        if result["label"].startswith("naive"):
            per_object = wall / result["objects"]
            full = per_object * total_objects
            print(
                f"{'naive loop, extrapolated to all objects':<48} {total_objects:>7} {full:>8.0f} "
                f"{'~' + str(round(requests / result['objects'] * total_objects)):>8} {'':>5} "
                f"{full / bound:>7.1f}"
            )
            if cascade_wall:
                print(f"\ncascade is {full / cascade_wall:.0f}x faster than the naive loop (extrapolated)")
    floor = total_objects / RATE_LIMIT
    # The chain no schedule overlaps: the last pool's operation, then its training's, then the project's.
    critical = floor + CHAIN * OPERATION_DURATION
    print(
        f"\nrequests_per_second={RATE_LIMIT:g} vs learning the pace from 429s; floor: one request per object "
        f"({total_objects}) at {RATE_LIMIT:g} req/s = {floor:.2f} s; critical path: the floor, then "
        f"{CHAIN} operations one after another (last pool, its training, the project) = {critical:.2f} s"
    )
    header = (
        f"{'approach':<48} {'wall s':>7} {'floor s':>7} {'x floor':>7} {'path s':>7} {'x path':>7} "
        f"{'429s':>5} {'429s >1s':>8}"
    )
    print(header)
    print("-" * len(header))
    for result in results:
        if result["label"].startswith("cascade") and "after every pool" not in result["label"]:
            print(
                f"{result['label']:<48} {result['wall']:>7.2f} {floor:>7.2f} {result['wall'] / floor:>7.2f} "
                f"{critical:>7.2f} {result['wall'] / critical:>7.2f} "
                f"{result['statuses'][429]:>5} {result['late_429s']:>8}"
            )
    for value in args.concurrency.split(","):
        new = by_label.get(f"cascade {value}, pace learned from 429s")
        old = by_label.get(f"cascade {value}, trainings forced after every pool")
        if new and old:
            print(
                f"max_concurrency={value}: the cascade's own order {new:.1f} s ({new / bound:.2f}x bound) "
                f"vs trainings forced after every pool {old:.1f} s ({old / bound:.2f}x bound)"
            )


if __name__ == "__main__":
    main()
