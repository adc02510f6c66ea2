"""Two cascades of one account at once: one shared budget vs per-process pacing vs a static 50/50 split.

    .venv/bin/python benchmarks/bench_budget.py [--repeat 1] [--skip-triggerer]

Two worker processes each run ``TolokaArchiveProjectOperator(cascade=True)`` at the same moment: one
project of 600 closed pools, one of 150, against an emulator (its own process) that refuses more than
100 requests a second (a sliding second), with 20 ms latency and 0.5 s operations. Variants:

- shared budget: both connections ``requests_per_second=100`` and ``rate_limit_storage_uri`` on a private
  ``redis-server`` (Debian's package, on a free loopback port);
- per-process: ``requests_per_second=100`` each, no store: together they send up to 200 a second;
- static 50/50: ``requests_per_second=50`` each, the hand split ``docs/deployment.md`` gave before.
- (unless ``--skip-triggerer``) shared budget + triggerer: the same two cascades next to a third process
  holding 1000 deferred waits (``TolokaOperationTrigger``, one event loop: a triggerer) on long-running
  operations of a third project, all three on one budget.

Every figure comes from the emulator's request log (``GET /_emulator/requests``): requests and 429s after
the start, 429s after the first second, and the busiest sliding second. The target: no 429 after the first
second, and both cascades done within 1.15 x (requests ÷ 100) plus the final chain (the last pool's
operation, then the project's: 2 x 0.5 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="toloka-bench-airflow-"))

SIZES = {"1": 600, "2": 150}
DEFERRED = 1000
DEFERRED_PROJECT = "3"
LATENCY, OPERATION_DURATION, RATE_LIMIT = 0.02, 0.5, 100.0
CHAIN = 2 * OPERATION_DURATION


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_seed(directory: Path, deferred: int) -> Path:
    pools: list[dict[str, Any]] = []
    for project, size in {**SIZES, DEFERRED_PROJECT: deferred}.items():
        start = int(project) * 100_000
        pools += [{"id": str(start + i), "project_id": project, "status": "CLOSED"} for i in range(size)]
    projects = [{"id": project} for project in (*SIZES, DEFERRED_PROJECT)]
    path = directory / "budget-seed.json"
    path.write_text(json.dumps({"projects": projects, "pools": pools}))
    return path


@contextmanager
def redis_server() -> Iterator[str]:
    if shutil.which("redis-server") is None:
        sys.exit("needs redis-server (Debian package redis-server)")
    port = free_port()
    with tempfile.TemporaryDirectory() as directory:
        command = [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            directory,
        ]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, start_new_session=True)
        try:
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.1)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            process.wait(10)


@contextmanager
def emulator(seed: Path) -> Iterator[str]:
    command = [
        sys.executable, "-m", "airflow_provider_toloka.emulator", "--port", "0", "--seed", str(seed),
        "--operation-duration", str(OPERATION_DURATION), "--rate-limit", str(RATE_LIMIT),
        "--latency", str(LATENCY),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        yield line.split("serving ", 1)[1].split("/api/v1", 1)[0]
    finally:
        process.terminate()
        process.wait(timeout=10)


def control(url: str, method: str, path: str, body: object = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{url}/_emulator/{path}", data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request) as answer:
        return json.loads(answer.read() or b"null")


def conn_json(url: str, rate: float, store: str | None) -> str:
    extra: dict[str, Any] = {"requests_per_second": rate}
    if store:
        extra["rate_limit_storage_uri"] = store
    return json.dumps({"conn_type": "toloka", "host": url, "password": "test-token", "extra": extra})


# -- the processes ------------------------------------------------------------------------------------


def worker(project: str) -> None:
    """One Airflow worker running a cascade; waits for ``go`` on stdin, prints its wall time."""
    from airflow_provider_toloka.operators.archive import TolokaArchiveProjectOperator

    class TI:
        def xcom_push(self, key: str, value: object) -> None:
            pass

    operator = TolokaArchiveProjectOperator(task_id="bench", project_id=project, cascade=True)
    operator.hook.settings  # noqa: B018 - read the connection before the clock starts
    print("ready", flush=True)
    sys.stdin.readline()
    started = time.monotonic()
    summary = operator.execute({"ti": TI()})  # type: ignore[arg-type]
    print(json.dumps({"wall": time.monotonic() - started, "pools": len(summary["pools"]["archived"])}))


def triggerer(ids_file: str) -> None:
    """One triggerer's event loop holding a deferred wait per operation id, until stdin closes."""
    from airflow_provider_toloka.triggers.operation import TolokaOperationTrigger

    ids = json.loads(Path(ids_file).read_text())

    async def hold() -> None:
        async def wait(operation_id: str) -> None:
            async for _event in TolokaOperationTrigger(operation_id, poll_interval=5).run():
                pass

        tasks = [asyncio.ensure_future(wait(operation_id)) for operation_id in ids]
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # go
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # stop
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(hold())
    print(json.dumps({"waits": len(ids)}))


# -- one variant ---------------------------------------------------------------------------------------


def start(args: list[str], conn: str) -> subprocess.Popen[str]:
    env = {**os.environ, "AIRFLOW_CONN_TOLOKA_DEFAULT": conn}
    process = subprocess.Popen(
        [sys.executable, __file__, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )
    assert process.stdout is not None
    for line in process.stdout:
        if line.strip() == "ready":
            return process
    raise RuntimeError(f"{args} did not start")


def send(process: subprocess.Popen[str], line: str) -> None:
    assert process.stdin is not None
    process.stdin.write(line + "\n")
    process.stdin.flush()


def last_json(process: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = process.communicate(timeout=600)
    return json.loads([line for line in out.splitlines() if line.startswith("{")][-1])


def run(label: str, seed: Path, rate: float, store: str | None, deferred: bool) -> dict[str, Any]:
    with emulator(seed) as url:
        # The budget's key holds the API URL, so each fresh emulator (its own port) has a budget of its own.
        conn = conn_json(url, rate, store)
        holder = None
        if deferred:
            # Long operations started before the clock, unthrottled: the triggerer waits on them throughout.
            control(url, "PUT", "settings", {"rate_limit": None, "operation_duration": 3600})
            from airflow_provider_toloka.hooks.toloka import TolokaHook

            os.environ["AIRFLOW_CONN_TOLOKA_DEFAULT"] = conn_json(url, 300, None)
            hook = TolokaHook()
            start_id = int(DEFERRED_PROJECT) * 100_000
            ids = [hook.archive_pool(str(start_id + i))["id"] for i in range(DEFERRED)]  # type: ignore[index]
            control(
                url, "PUT", "settings", {"rate_limit": RATE_LIMIT, "operation_duration": OPERATION_DURATION}
            )
            ids_file = seed.with_name("deferred-ids.json")
            ids_file.write_text(json.dumps(ids))
            holder = start(["--triggerer", str(ids_file)], conn)
        workers = [start(["--worker", project], conn) for project in SIZES]
        control(url, "DELETE", "requests")
        began = time.time()
        for process in [*workers, *([holder] if holder else [])]:
            send(process, "go")
        results = [last_json(process) for process in workers]
        if holder is not None:
            send(holder, "stop")
            last_json(holder)
        log = [r for r in control(url, "GET", "requests")["items"] if r["time"] >= began]
    times = sorted(r["time"] for r in log if r["status"] != 429)
    busiest, left = 0, 0
    for right, at in enumerate(times):
        while times[left] <= at - 1.0:
            left += 1
        busiest = max(busiest, right - left + 1)
    refused = [r for r in log if r["status"] == 429]
    return {
        "label": label,
        "walls": [result["wall"] for result in results],
        "wall": max(result["wall"] for result in results),  # from "go" to the last cascade's end
        "requests": len(log),
        "refused": len(refused),
        "late": sum(1 for r in refused if r["time"] > began + 1.0),
        "busiest": busiest,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--triggerer", help=argparse.SUPPRESS)
    parser.add_argument(
        "--skip-triggerer", action="store_true", help="skip the case with 1000 deferred waits"
    )
    parser.add_argument("--repeat", type=int, default=1, help="rounds of each variant; the fastest is shown")
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker)
    if args.triggerer:
        return triggerer(args.triggerer)

    with tempfile.TemporaryDirectory() as directory, redis_server() as store:
        seed = write_seed(Path(directory), 0 if args.skip_triggerer else DEFERRED)
        variants = [
            ("shared budget (Redis), 100/s", RATE_LIMIT, store, False),
            ("per-process, 100/s each", RATE_LIMIT, None, False),
            ("static split, 50/s each", RATE_LIMIT / 2, None, False),
        ]
        if not args.skip_triggerer:
            variants.append((f"shared budget + triggerer ({DEFERRED} waits)", RATE_LIMIT, store, True))
        rounds = [[run(label, seed, *rest) for label, *rest in variants] for _ in range(args.repeat)]
        results = [min(tries, key=lambda result: result["wall"]) for tries in zip(*rounds, strict=True)]

    print(
        f"\ntwo cascades at once: {SIZES['1']} + {SIZES['2']} pools (+ 2 projects); limit {RATE_LIMIT:g}/s, "
        f"latency {LATENCY * 1000:g} ms, operations {OPERATION_DURATION:g} s; target: no 429 after 1 s, "
        f"wall <= 1.15 x requests / {RATE_LIMIT:g} + {CHAIN:g} s"
    )
    header = (
        f"{'variant':<40} {'600 s':>6} {'150 s':>6} {'wall s':>7} {'requests':>8} {'429s':>5} "
        f"{'429s>1s':>7} {'peak/s':>6} {'target s':>8} {'met':>4}"
    )
    print(header)
    print("-" * len(header))
    for result in results:
        accepted = result["requests"] - result["refused"]
        target = 1.15 * accepted / RATE_LIMIT + CHAIN
        met = result["late"] == 0 and result["wall"] <= target
        big, small = result["walls"]
        print(
            f"{result['label']:<40} {big:>6.1f} {small:>6.1f} {result['wall']:>7.1f} {result['requests']:>8} "
            f"{result['refused']:>5} {result['late']:>7} {result['busiest']:>6} {target:>8.1f} "
            f"{'yes' if met else 'no':>4}"
        )


if __name__ == "__main__":
    main()
