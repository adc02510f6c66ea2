"""Does a deferred cascade keep the triggerer healthy? A big cascade beside many deferred single waits.

    .venv/bin/python benchmarks/bench_triggerer_cascade.py [--pools 10000] [--waits 1000] [--rate 100]

The emulator runs in its own process (its work does not share our GIL), with a limit of twice ``--rate``
requests a second; the connection declares ``--rate`` (``requests_per_second``), so the cascade and the
shared reader each keep to it. First ``--waits`` pools of another project are archived with operations
that outlast the run (10 minutes), and each gets a ``TolokaOperationTrigger`` in this process's event
loop, as a triggerer holds them; then ``TolokaCascadeTrigger`` archives a project of ``--pools`` closed
pools (0.5 s operations) in the same loop. Reported, while the cascade runs:

- event-loop lag: how late a 50 ms ticker wakes (p50 / p99 / max);
- memory: the process's peak RSS above its RSS just before the cascade started (the waits already held);
- the cascade's wall time against its floor (one archive per object at the declared rate), and its event's
  size.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="toloka-bench-airflow-"))

LATENCY, CASCADE_OPERATION, WAIT_OPERATION, TICK = 0.02, 0.5, 600.0, 0.05


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


def start_emulator(directory: Path, pools: int, waits: int, rate: float) -> tuple[subprocess.Popen, str]:
    seed = {
        "projects": [{"id": "1"}, {"id": "2"}],
        "pools": [{"id": str(100_000 + i), "project_id": "1", "status": "CLOSED"} for i in range(pools)]
        + [{"id": str(900_000 + i), "project_id": "2", "status": "CLOSED"} for i in range(waits)],
    }
    path = directory / "seed.json"
    path.write_text(json.dumps(seed))
    command = [
        sys.executable, "-m", "airflow_provider_toloka.emulator", "--port", "0", "--seed", str(path),
        "--operation-duration", str(WAIT_OPERATION), "--rate-limit", str(2 * rate), "--latency", str(LATENCY),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    url = process.stdout.readline().split("serving ", 1)[1].split("/api/v1", 1)[0]
    extra = {"auth_scheme": "OAuth", "requests_per_second": rate}
    os.environ["AIRFLOW_CONN_TOLOKA_DEFAULT"] = json.dumps(
        {"conn_type": "toloka", "host": url, "password": "test-token", "extra": extra}
    )
    return process, url


def submit_waits(url: str, waits: int) -> list[str]:
    """Archive the other project's pools (10-minute operations); then new operations last 0.5 s."""
    import httpx

    from airflow_provider_toloka.hooks.toloka import TolokaHook

    hook = TolokaHook(max_connections=8)
    with ThreadPoolExecutor(8) as pool:
        operations = list(pool.map(hook.archive_pool, [str(900_000 + i) for i in range(waits)]))
    httpx.put(f"{url}/_emulator/settings", json={"operation_duration": CASCADE_OPERATION}).raise_for_status()
    return [operation["id"] for operation in operations if operation]


async def measure(pools: int, operation_ids: list[str]) -> dict[str, Any]:
    from airflow_provider_toloka.triggers.cascade import TolokaCascadeTrigger
    from airflow_provider_toloka.triggers.operation import TolokaOperationTrigger

    async def wait(operation_id: str) -> None:
        async for _ in TolokaOperationTrigger(operation_id, poll_interval=10).run():
            pass

    waits = [asyncio.ensure_future(wait(operation_id)) for operation_id in operation_ids]
    await asyncio.sleep(15)  # the waits' first reads are over; they settle into the shared reader's rounds
    lags: list[float] = []
    peak = before = rss_mb()
    running = True

    async def ticker() -> None:
        nonlocal peak
        loop = asyncio.get_running_loop()
        while running:
            start = loop.time()
            await asyncio.sleep(TICK)
            lags.append(loop.time() - start - TICK)
            peak = max(peak, rss_mb())

    ticking = asyncio.ensure_future(ticker())
    started = time.monotonic()
    trigger = TolokaCascadeTrigger("1", max_concurrency=128, poll_interval=10)
    [event] = [event.payload async for event in trigger.run()]
    wall = time.monotonic() - started
    running = False
    await ticking
    for task in waits:
        task.cancel()
    await asyncio.gather(*waits, return_exceptions=True)
    return {
        "status": event["status"],
        "wall": wall,
        "lag_p50": percentile(lags, 0.5) * 1000,
        "lag_p99": percentile(lags, 0.99) * 1000,
        "lag_max": max(lags, default=0.0) * 1000,
        "rss_before": before,
        "rss_added": peak - before,
        "event_kb": len(json.dumps(event)) / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pools", type=int, default=10_000)
    parser.add_argument("--waits", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=100.0)
    args = parser.parse_args()
    import logging

    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as directory:
        process, url = start_emulator(Path(directory), args.pools, args.waits, args.rate)
        try:
            operation_ids = submit_waits(url, args.waits)
            result = asyncio.run(measure(args.pools, operation_ids))
        finally:
            process.terminate()
            process.wait(timeout=10)
    floor = (args.pools + 1) / args.rate
    print(
        f"\n{args.pools} pools cascaded in the loop of {len(operation_ids)} deferred single waits; "
        f"requests_per_second={args.rate:g} (limit {2 * args.rate:g}); load {os.getloadavg()[0]:.1f}"
    )
    print(
        f"{'event':<8} {'wall s':>7} {'floor s':>7} {'lag p50/p99/max ms':>20} {'RSS before MB':>13} "
        f"{'RSS+ MB':>8} {'event KB':>8}"
    )
    lag = f"{result['lag_p50']:.0f} / {result['lag_p99']:.0f} / {result['lag_max']:.0f}"
    print(
        f"{result['status']:<8} {result['wall']:>7.1f} {floor:>7.1f} {lag:>20} {result['rss_before']:>13.0f} "
        f"{result['rss_added']:>8.1f} {result['event_kb']:>8.0f}"
    )


if __name__ == "__main__":
    main()
