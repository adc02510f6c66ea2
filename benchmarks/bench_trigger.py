"""What do N deferred waits cost Toloka and the triggerer? The shared reader against per-trigger polling.

For each N in ``--sizes`` it archives N pools on the emulator (its own process, so its work does not share
our GIL), each operation lasting ``--duration`` plus up to ``--spread`` seconds (60 to 90 s by default),
and waits for all N in one event loop, as a triggerer does, two ways:

- ``naive``: each wait polls its own operation (``GET /operations/{id}``) through ``TolokaAsyncHook``,
  half a second after it starts, then twice as long each time up to ``poll_interval``, with x0.5-1.0
  jitter. This is ``TolokaOperationTrigger`` as it was before the shared reader, copied here as the
  baseline;
- ``shared``: N ``TolokaOperationTrigger.run()``, which register with the loop's shared reader
  (``triggers/reader.py``) and are read by page.

Every (mode, N) runs in a fresh child process, so peak RSS is its own. The parent submits the archives
from 8 threads and hands each operation id to the child, which starts its wait at once (as a task defers
right after submitting). The child counts every request it sends to Toloka and reports:

- requests a second while nothing ends: from 2 x ``poll_interval`` after the last wait started (the fast
  first polls are over) until the first operation ends;
- requests a second while they end: from the first operation's end to the last event;
- event delay: from an operation's ``finished`` time to its event (p50 / p95 / max);
- event-loop lag: how late a 50 ms ticker wakes (p99 / max);
- added memory: peak RSS above the child's RSS before the first wait, per wait;
- how long submitting took and the machine's load average, since both move every other figure.

    python benchmarks/bench_trigger.py                       # N = 1000 and 5000, ~2 minutes per row
    python benchmarks/bench_trigger.py --sizes 200 --duration 20 --spread 10   # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import os
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

TICK = 0.05
POOL_BASE = 100_000
MODES = ("naive", "shared")
RESULT = "result: "  # the child's result line; Airflow's logging may print other lines to stdout

# --- child: one run ---------------------------------------------------------------------------------


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _finished_at(operation: dict[str, Any]) -> float:
    return dt.datetime.fromisoformat(operation["finished"]).replace(tzinfo=dt.UTC).timestamp()


def _percentile(values: list[float], share: float) -> float:
    return values[min(len(values) - 1, int(len(values) * share))] if values else float("nan")


async def naive_wait(operation_id: str, poll_interval: float) -> dict[str, Any]:
    """The baseline: ``TolokaOperationTrigger``'s own polling loop before the shared reader (success path)."""
    from airflow_provider_toloka.hooks.toloka_async import TolokaAsyncHook
    from airflow_provider_toloka.operation_status import describe, operation_status, poll_delays
    from airflow_provider_toloka.retry import DEFAULT_RETRY_MIN_WAIT

    log = logging.getLogger("naive")
    hook = TolokaAsyncHook(retry_min_wait=min(DEFAULT_RETRY_MIN_WAIT, poll_interval))
    async with hook:
        delays = poll_delays(poll_interval)
        last_line = ""
        while True:
            operation = await hook.get_operation(operation_id)
            line = describe(operation)
            if line != last_line:
                log.info("%s", line)
                last_line = line
            if operation_status(operation).is_terminal:
                return operation
            await asyncio.sleep(next(delays) * random.uniform(0.5, 1.0))


async def shared_wait(operation_id: str, poll_interval: float) -> dict[str, Any] | None:
    from airflow_provider_toloka.triggers.operation import TolokaOperationTrigger

    async for event in TolokaOperationTrigger(operation_id, poll_interval=poll_interval).run():
        return event.payload["operation"]
    return None


def _child(mode: str, poll_interval: float) -> dict:
    import httpx

    sent: list[float] = []
    send = httpx.AsyncClient.send

    async def counting_send(self: httpx.AsyncClient, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        sent.append(time.time())
        return await send(self, request, **kwargs)

    httpx.AsyncClient.send = counting_send  # type: ignore[method-assign]
    wait = naive_wait if mode == "naive" else shared_wait

    async def main() -> dict:
        lags: list[float] = []
        done: list[tuple[float, dict | None]] = []
        finished = asyncio.Event()

        async def ticker() -> None:
            while not finished.is_set():
                before = time.perf_counter()
                await asyncio.sleep(TICK)
                lags.append(time.perf_counter() - before - TICK)

        async def one(operation_id: str) -> None:
            done.append((0.0, await wait(operation_id, poll_interval)))
            done[-1] = (time.time(), done[-1][1])

        loop = asyncio.get_running_loop()
        ids = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(ids), sys.stdin)
        base_rss = _rss_mb()
        tick = asyncio.create_task(ticker())
        waiters = []
        first_start = time.time()
        while (line := (await ids.readline()).decode().strip()) != "end":
            waiters.append(asyncio.create_task(one(line)))  # as a task defers right after submitting
        last_start = time.time()
        await asyncio.gather(*waiters)
        finished.set()
        await tick
        ended = sorted(_finished_at(op) for _, op in done if op and op.get("finished"))
        delays = sorted(at - _finished_at(op) for at, op in done if op and op.get("finished"))
        last_event = max(at for at, _ in done)
        quiet_from, first_end = last_start + 2 * poll_interval, ended[0]
        quiet = first_end - quiet_from  # none when submitting took longer than the shortest operation
        lags.sort()
        return {
            "mode": mode,
            "n": len(waiters),
            "delivered": sum(1 for _, op in done if op and op.get("status") == "SUCCESS"),
            "rss_added_mb": _peak_rss_mb() - base_rss,
            "requests": len(sent),
            "quiet_rps": sum(quiet_from <= t < first_end for t in sent) / quiet if quiet > 0 else None,
            "quiet_window": quiet,
            "submit_s": last_start - first_start,
            "load": os.getloadavg()[0],
            "ending_rps": sum(first_end <= t <= last_event for t in sent) / max(last_event - first_end, 1e-9),
            "delay_p50": statistics.median(delays),
            "delay_p95": _percentile(delays, 0.95),
            "delay_max": delays[-1],
            "lag_p99_ms": _percentile(lags, 0.99) * 1000,
            "lag_max_ms": lags[-1] * 1000,
        }

    return asyncio.run(main())


def child(args: argparse.Namespace) -> None:
    import airflow.sdk  # noqa: F401  (loaded before the baseline RSS, as in a running triggerer)

    from airflow_provider_toloka.triggers.operation import TolokaOperationTrigger

    # A running triggerer has paid its one-off imports (connection lookup, httpx's async stack) with its
    # first trigger; so does this run, with a wait that ends in a 404.
    asyncio.run(anext(TolokaOperationTrigger("warm-up").run()))
    print("ready", flush=True)
    print(RESULT + json.dumps(_child(args.child, args.poll_interval)), flush=True)


# --- parent: emulator, submissions, table -----------------------------------------------------------


def start_emulator(total_pools: int, duration: float, spread: float) -> tuple[subprocess.Popen, str, str]:
    seed = {
        "projects": [{"id": "1"}],
        "pools": [{"id": str(POOL_BASE + i), "project_id": "1"} for i in range(total_pools)],
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as seed_file:
        json.dump(seed, seed_file)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_provider_toloka.emulator",
            "--port",
            "0",
            "--seed",
            seed_file.name,
            "--operation-duration",
            str(duration),
            "--operation-duration-spread",
            str(spread),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    url_line = proc.stdout.readline()
    conn_line = proc.stdout.readline()
    match = re.search(r"(http://\S+/api/v1)", url_line)
    if not match:
        proc.kill()
        raise RuntimeError(f"the emulator did not start: {url_line!r}")
    conn = conn_line.split("=", 1)[1].strip().strip("'")
    return proc, match.group(1), conn


def submit(api_url: str, token: str, pool_ids: list[str], to_child: Any) -> None:
    """Archive the pools from 8 threads, handing each operation id to the child as soon as Toloka answers."""
    import requests

    local = threading.local()
    lock = threading.Lock()

    def archive(pool_id: str) -> None:
        if not hasattr(local, "session"):
            local.session = requests.Session()
            local.session.headers["Authorization"] = f"OAuth {token}"
        response = local.session.post(f"{api_url}/pools/{pool_id}/archive", timeout=60)
        response.raise_for_status()
        with lock:
            to_child.write(response.json()["id"] + "\n")
            to_child.flush()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(archive, pool_ids))
    to_child.write("end\n")
    to_child.flush()


def run_one(mode: str, pool_ids: list[str], args: argparse.Namespace, api_url: str, conn: str) -> dict:
    env = {**os.environ, "AIRFLOW_CONN_TOLOKA_DEFAULT": conn, "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING"}
    command = [sys.executable, __file__, "--child", mode, "--poll-interval", str(args.poll_interval)]
    proc = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    if not any(line.strip() == "ready" for line in proc.stdout):
        raise RuntimeError(f"{mode} child did not start")
    submit(api_url, json.loads(conn)["password"], pool_ids, proc.stdin)
    result = next((json.loads(line[len(RESULT) :]) for line in proc.stdout if line.startswith(RESULT)), None)
    proc.wait()
    if result is None:
        raise RuntimeError(f"{mode} child ended without a result (exit code {proc.returncode})")
    return result


def print_table(rows: list[dict]) -> None:
    header = (
        f"{'mode':<7} {'N':>5} {'delivered':>10} {'req/s quiet':>11} {'req/s ending':>12} {'requests':>8} "
        f"{'event delay p50/p95/max s':>26} {'loop lag p99/max ms':>20} {'RSS+ MB':>8} {'KB/wait':>7} "
        f"{'submit s':>8} {'load':>5}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        delay = f"{r['delay_p50']:.1f} / {r['delay_p95']:.1f} / {r['delay_max']:.1f}"
        lag = f"{r['lag_p99_ms']:.0f} / {r['lag_max_ms']:.0f}"
        quiet = "-" if r["quiet_rps"] is None else f"{r['quiet_rps']:.2f}"
        print(
            f"{r['mode']:<7} {r['n']:>5} {r['delivered']:>5}/{r['n']:<4} {quiet:>11} "
            f"{r['ending_rps']:>12.1f} {r['requests']:>8} {delay:>26} {lag:>20} "
            f"{r['rss_added_mb']:>8.1f} {r['rss_added_mb'] * 1024 / r['n']:>7.1f} "
            f"{r['submit_s']:>8.1f} {r['load']:>5.1f}"
        )
    print(
        "\nreq/s quiet: from 2 x poll_interval after the last wait started to the first end ('-': submitting "
        "took longer than that); submit s: seconds from the first wait to the last; load: 1-min load average"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000,5000", help="comma-separated N (default: %(default)s)")
    parser.add_argument(
        "--duration", type=float, default=60.0, help="shortest operation, seconds (default: 60)"
    )
    parser.add_argument(
        "--spread", type=float, default=30.0, help="operations last up to this much longer (30)"
    )
    parser.add_argument("--poll-interval", type=float, default=10.0, help="the waits' poll_interval (10)")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated, of: naive, shared")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    sizes = [int(size) for size in args.sizes.split(",")]
    plan = [(mode, n) for n in sizes for mode in args.modes.split(",")]
    emulator, api_url, conn = start_emulator(sum(n for _, n in plan), args.duration, args.spread)
    print(
        f"operations last {args.duration:g} to {args.duration + args.spread:g} s; poll_interval "
        f"{args.poll_interval:g} s; emulator {api_url} in its own process\n",
        flush=True,
    )
    rows, next_pool = [], POOL_BASE
    try:
        for mode, n in plan:
            pool_ids = [str(next_pool + i) for i in range(n)]
            next_pool += n
            rows.append(run_one(mode, pool_ids, args, api_url, conn))
            print(f"  done: {json.dumps(rows[-1])}", file=sys.stderr, flush=True)
    finally:
        emulator.terminate()
        emulator.wait()
    print_table(rows)


if __name__ == "__main__":
    main()
