"""Measure the emulator's throughput: ``python benchmarks/bench_emulator.py [--threads N]``.

Not a test (pytest does not collect ``bench_*``): numbers printed for a person, never asserted. Two runs:
- in-process, as the pytest fixture runs it: client threads and server share one interpreter and its GIL,
  so this is what a user's test sees;
- server in its own process (the CLI) and light clients (``http.client``, one kept-alive connection per
  thread), to show what the server itself sustains rather than what ``requests`` can send.
Each client thread archives its own pools and reads each pool and operation back (three requests per pool).
"""

from __future__ import annotations

import argparse
import http.client
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import requests

from airflow_provider_toloka.emulator.server import TolokaEmulator

REPO = Path(__file__).resolve().parents[1]


def run_clients(client: Callable[[int], None], threads: int, requests_per_thread: int) -> float:
    """Run ``client(thread)`` on ``threads`` threads at once; return requests per second."""
    workers = [threading.Thread(target=client, args=(thread,)) for thread in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return threads * requests_per_thread / (time.perf_counter() - started)


def hammer(url: str, token: str, threads: int, pools: int, prefix: str) -> float:
    """Run the clients against ``url``; return requests per second."""

    def client(thread: int) -> None:
        with requests.Session() as session:
            session.headers["Authorization"] = f"OAuth {token}"
            base = f"{url}/api/v1"
            for index in range(pools):
                pool = f"{prefix}{thread:02d}{index:04d}"
                operation = session.post(f"{base}/pools/{pool}/archive", timeout=30).json()
                session.get(f"{base}/pools/{pool}", timeout=30)
                session.get(f"{base}/operations/{operation['id']}", timeout=30)

    return run_clients(client, threads, pools * 3)


def hammer_light(url: str, token: str, threads: int, pools: int, prefix: str) -> float:
    """``hammer`` with ``http.client``: a cheaper client, so the server rather than the client is measured."""
    host, port = url.removeprefix("http://").split(":")
    headers = {"Authorization": f"OAuth {token}"}

    def call(conn: http.client.HTTPConnection, method: str, path: str) -> bytes:
        conn.request(method, f"/api/v1{path}", headers=headers)
        return conn.getresponse().read()

    def client(thread: int) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        for index in range(pools):
            pool = f"{prefix}{thread:02d}{index:04d}"
            operation = json.loads(call(conn, "POST", f"/pools/{pool}/archive"))
            call(conn, "GET", f"/pools/{pool}")
            call(conn, "GET", f"/operations/{operation['id']}")
        conn.close()

    return run_clients(client, threads, pools * 3)


def seed(threads: int, pools: int, prefix: str) -> dict[str, list[dict[str, str]]]:
    ids = [f"{prefix}{thread:02d}{index:04d}" for thread in range(threads) for index in range(pools)]
    return {"pools": [{"id": pool_id, "project_id": "1"} for pool_id in ids]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--per-thread", type=int, default=300, help="requests per client thread")
    args = parser.parse_args()
    pools = args.per_thread // 3
    total = args.threads * pools * 3

    with TolokaEmulator(operation_duration=0.05) as emulator:
        for entry in seed(args.threads, pools, "1")["pools"]:
            emulator.add_pool(entry["id"], entry["project_id"])
        rate = hammer(emulator.url, emulator.token, args.threads, pools, "1")
        lost = total - len(emulator.requests)
        print(f"in-process, requests: {total} requests, {args.threads} threads: {rate:.0f}/s (lost {lost})")

    seed_dir = tempfile.TemporaryDirectory()
    seed_file = Path(seed_dir.name) / "bench-seed.json"
    seed_file.write_text(json.dumps(seed(args.threads, pools, "2")))
    server = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_toloka.emulator", "--port", "0", "--seed", str(seed_file)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert server.stdout is not None
        server.stdout.readline()
        conn = json.loads(server.stdout.readline().partition("=")[2].strip().strip("'"))
        rate = hammer_light(conn["host"], conn["password"], args.threads, pools, "2")
        print(f"separate process, http.client: {total} requests, {args.threads} threads: {rate:.0f}/s")
    finally:
        server.terminate()
        server.wait(timeout=15)
        seed_dir.cleanup()


if __name__ == "__main__":
    main()
