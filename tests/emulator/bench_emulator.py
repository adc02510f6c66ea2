"""Measure the emulator's throughput: ``python tests/emulator/bench_emulator.py [threads] [per_thread]``.

Not a test (pytest does not collect ``bench_*``): a number printed for a person, never asserted. It runs the
emulator in-process on a background thread, as the pytest fixture does, so client threads and the server share
one interpreter; that is the load a user's test puts on it.
"""

from __future__ import annotations

import sys
import threading
import time

import requests

from airflow_provider_toloka.emulator.server import TolokaEmulator


def main(threads: int = 16, per_thread: int = 300) -> None:
    with TolokaEmulator(operation_duration=0.05) as emulator:
        pools = per_thread // 3
        for thread in range(threads):
            for index in range(pools):
                emulator.add_pool(f"{thread}{index:04d}", project_id="1")

        def client(thread: int) -> None:
            with requests.Session() as session:
                session.headers["Authorization"] = f"OAuth {emulator.token}"
                base = f"{emulator.url}/api/v1"
                for index in range(pools):
                    operation = session.post(f"{base}/pools/{thread}{index:04d}/archive", timeout=30).json()
                    session.get(f"{base}/pools/{thread}{index:04d}", timeout=30)
                    session.get(f"{base}/operations/{operation['id']}", timeout=30)

        workers = [threading.Thread(target=client, args=(thread,)) for thread in range(threads)]
        started = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        elapsed = time.perf_counter() - started
        total = len(emulator.requests)
        print(f"{total} requests from {threads} threads in {elapsed:.2f} s: {total / elapsed:.0f} requests/s")
        print(f"operations created: {len(emulator.operations())}")


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:3]))
