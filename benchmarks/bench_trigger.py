"""How many deferred waits can one triggerer hold? ``TolokaOperationTrigger`` against the naive way.

For each N in ``--sizes`` it archives N pools on the emulator (running as its own process, so its work
does not share our GIL) and waits for all N operations, each lasting ``--duration`` seconds:

- ``trigger``: N ``TolokaOperationTrigger.run()`` in one event loop, as the triggerer runs them;
- ``threads``: N threads each polling its operation every second with ``requests``, as toloka-kit's
  ``wait_operation`` does (capped at ``--max-threads``: thousands of threads hammering at 1 req/s each
  overload a single emulator process, which measures the emulator rather than the client).

Every (mode, N) runs in a fresh child process, so peak RSS is its own. The child imports everything,
says ready, the parent submits the archives from 8 threads and hands each operation id to the child,
which starts its waiter at once (as a task defers right after submitting), and reports:
wall time until the last event, events delivered, peak RSS added per waiter, ``GET /operations/{id}``
requests per waiter, delay from the operation's ``finished`` time to its event, and the lag of a 50 ms
ticker (an asyncio task for triggers, a thread for the baseline) as a measure of a starved loop.

    python benchmarks/bench_trigger.py --sizes 1,100,1000,5000
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
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


# --- child: one run ---------------------------------------------------------------------------------


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _finished_at(operation: dict[str, Any]) -> float:
    return dt.datetime.fromisoformat(operation["finished"]).replace(tzinfo=dt.timezone.utc).timestamp()


def _summary(
    mode: str, n: int, started: float, base_rss: float, done: list, requests: int, lags: list
) -> dict:
    delays = sorted(at - _finished_at(op) for at, op in done if op and op.get("finished"))
    lags.sort()
    return {
        "mode": mode,
        "n": n,
        "wall": time.time() - started,
        "delivered": sum(1 for _, op in done if op and op.get("status") == "SUCCESS"),
        "rss_added_mb": _peak_rss_mb() - base_rss,
        "requests": requests,
        "delay_p50": statistics.median(delays) if delays else float("nan"),
        "delay_max": delays[-1] if delays else float("nan"),
        "lag_p99_ms": lags[int(len(lags) * 0.99)] * 1000 if lags else float("nan"),
        "lag_max_ms": lags[-1] * 1000 if lags else float("nan"),
    }


def _child_trigger(poll_interval: float) -> dict:
    import httpx

    from airflow_provider_toloka.triggers.operation import TolokaOperationTrigger

    polls = 0
    send = httpx.AsyncClient.send

    async def counting_send(self: httpx.AsyncClient, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        nonlocal polls
        polls += 1
        return await send(self, request, **kwargs)

    httpx.AsyncClient.send = counting_send  # type: ignore[method-assign]

    async def main() -> dict:
        lags: list[float] = []
        done: list[tuple[float, dict | None]] = []
        finished = asyncio.Event()

        async def ticker() -> None:
            while not finished.is_set():
                before = time.perf_counter()
                await asyncio.sleep(TICK)
                lags.append(time.perf_counter() - before - TICK)

        async def wait(operation_id: str) -> None:
            trigger = TolokaOperationTrigger(operation_id, poll_interval=poll_interval)
            async for event in trigger.run():
                done.append((time.time(), event.payload["operation"]))

        loop = asyncio.get_running_loop()
        ids = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(ids), sys.stdin)
        base_rss = _rss_mb()
        started = time.time()
        tick = asyncio.create_task(ticker())
        waiters = []
        while (line := (await ids.readline()).decode().strip()) != "end":
            waiters.append(asyncio.create_task(wait(line)))  # as a task defers right after submitting
        await asyncio.gather(*waiters)
        finished.set()
        await tick
        return _summary("trigger", len(waiters), started, base_rss, done, polls, lags)

    return asyncio.run(main())


def _child_threads(api_url: str, token: str) -> dict:
    import requests

    lock = threading.Lock()
    polls = 0
    done: list[tuple[float, dict | None]] = []
    lags: list[float] = []
    stop = threading.Event()

    def wait(operation_id: str) -> None:
        nonlocal polls
        session = requests.Session()
        session.headers["Authorization"] = f"OAuth {token}"
        operation: dict | None = None
        try:
            while True:
                operation = session.get(f"{api_url}/operations/{operation_id}", timeout=60).json()
                with lock:
                    polls += 1
                if operation["status"] in ("SUCCESS", "FAIL"):
                    break
                time.sleep(1)
        except Exception:
            operation = None  # toloka-kit's wait_operation does not retry: the waiter is lost
        with lock:
            done.append((time.time(), operation))

    def ticker() -> None:
        while not stop.is_set():
            before = time.perf_counter()
            time.sleep(TICK)
            lags.append(time.perf_counter() - before - TICK)

    base_rss = _rss_mb()
    started = time.time()
    tick = threading.Thread(target=ticker)
    tick.start()
    threads = []
    while (line := sys.stdin.readline().strip()) != "end":
        threads.append(threading.Thread(target=wait, args=(line,), daemon=True))
        threads[-1].start()
    for thread in threads:
        thread.join()
    stop.set()
    tick.join()
    return _summary("threads", len(threads), started, base_rss, done, polls, lags)


def child(args: argparse.Namespace) -> None:
    import airflow.sdk  # noqa: F401  (loaded before the baseline RSS, as in a running triggerer)
    import requests

    from airflow_provider_toloka.triggers.operation import TolokaOperationTrigger

    requests.Session()
    if args.child == "trigger":
        # A running triggerer has paid its one-off imports (connection lookup ~0.4 s, httpx's async
        # stack ~0.3 s) with its first trigger; so does this run, with a wait that ends in a 404.
        asyncio.run(anext(TolokaOperationTrigger("warm-up").run()))
    print("ready", flush=True)
    if args.child == "trigger":
        result = _child_trigger(args.poll_interval)
    else:
        result = _child_threads(args.api_url, args.token)
    print(json.dumps(result), flush=True)


# --- parent: emulator, submissions, table -----------------------------------------------------------


def start_emulator(total_pools: int, duration: float) -> tuple[subprocess.Popen, str, str]:
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


def run_one(
    mode: str, pool_ids: list[str], args: argparse.Namespace, api_url: str, conn: str, token: str
) -> dict:
    env = {**os.environ, "AIRFLOW_CONN_TOLOKA_DEFAULT": conn, "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING"}
    proc = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--child",
            mode,
            "--api-url",
            api_url,
            "--token",
            token,
            "--poll-interval",
            str(args.poll_interval),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise RuntimeError(f"{mode} child did not start")
    submit(api_url, token, pool_ids, proc.stdin)
    result = json.loads(proc.stdout.readline())
    proc.wait()
    return result


def print_table(rows: list[dict]) -> None:
    header = (
        f"{'mode':<8} {'N':>5} {'wall s':>7} {'delivered':>10} {'RSS+ MB':>8} {'KB/waiter':>9} "
        f"{'req/waiter':>10} {'finish->event p50/max s':>24} {'ticker lag p99/max ms':>22}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        if "skipped" in r:
            print(f"{r['mode']:<8} {r['n']:>5}  skipped: {r['skipped']}")
            continue
        print(
            f"{r['mode']:<8} {r['n']:>5} {r['wall']:>7.1f} {r['delivered']:>5}/{r['n']:<4} "
            f"{r['rss_added_mb']:>8.1f} {r['rss_added_mb'] * 1024 / r['n']:>9.1f} "
            f"{r['requests'] / r['n']:>10.2f} {r['delay_p50']:>12.2f} / {r['delay_max']:<9.2f} "
            f"{r['lag_p99_ms']:>10.1f} / {r['lag_max_ms']:<9.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1,100,1000,5000", help="comma-separated N (default: %(default)s)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds each operation runs")
    parser.add_argument("--poll-interval", type=float, default=10.0, help="the trigger's poll_interval")
    parser.add_argument("--max-threads", type=int, default=1000, help="largest N for the thread baseline")
    parser.add_argument("--child", choices=["trigger", "threads"], help=argparse.SUPPRESS)
    parser.add_argument("--api-url", help=argparse.SUPPRESS)
    parser.add_argument("--token", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    sizes = [int(size) for size in args.sizes.split(",")]
    plan = [(mode, n) for n in sizes for mode in ("trigger", "threads")]
    total = sum(n for _, n in plan)
    emulator, api_url, conn = start_emulator(total, args.duration)
    token = json.loads(conn)["password"]
    print(
        f"operations last {args.duration:g} s; trigger poll_interval {args.poll_interval:g} s; "
        f"baseline polls every 1 s; emulator {api_url} in its own process\n",
        flush=True,
    )
    rows, next_pool = [], POOL_BASE
    try:
        for mode, n in plan:
            pool_ids = [str(next_pool + i) for i in range(n)]
            next_pool += n
            if mode == "threads" and n > args.max_threads:
                rows.append({"mode": mode, "n": n, "skipped": f"above --max-threads {args.max_threads}"})
                continue
            rows.append(run_one(mode, pool_ids, args, api_url, conn, token))
            print(f"  done: {mode} N={n}", file=sys.stderr, flush=True)
    finally:
        emulator.terminate()
        emulator.wait()
    print_table(rows)


if __name__ == "__main__":
    main()
