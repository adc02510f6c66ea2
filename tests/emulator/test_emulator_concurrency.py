"""Many client threads against one emulator: nothing lost, nothing doubled, every answer consistent."""

from __future__ import annotations

import threading
from collections import Counter

import requests

THREADS = 16
# Three requests per pool (archive, read the pool, read the operation): 2400 in all. In-process, the server
# thread shares the GIL with every client thread, so more only slows the suite;
# benchmarks/bench_emulator.py runs 4800.
POOLS_PER_THREAD = 50


def test_many_threads_archiving_and_reading_lose_and_duplicate_nothing(toloka_emulator):
    toloka_emulator.operation_duration = 0.05
    for thread in range(THREADS):
        for index in range(POOLS_PER_THREAD):
            toloka_emulator.add_pool(f"{thread}{index:04d}", project_id=str(thread + 1))
    submitted: list[str] = []
    failures: list[str] = []
    lock = threading.Lock()

    def client(thread: int) -> None:
        with requests.Session() as session:
            session.headers["Authorization"] = f"OAuth {toloka_emulator.token}"
            base = f"{toloka_emulator.url}/api/v1"
            for index in range(POOLS_PER_THREAD):
                pool_id = f"{thread}{index:04d}"
                archive = session.post(f"{base}/pools/{pool_id}/archive", timeout=30)
                pool = session.get(f"{base}/pools/{pool_id}", timeout=30)
                operation = session.get(f"{base}/operations/{archive.json()['id']}", timeout=30)
                statuses = (archive.status_code, pool.status_code, operation.status_code)
                matches = statuses == (202, 200, 200) and operation.json()["parameters"] == {
                    "pool_id": pool_id
                }
                with lock:
                    submitted.append(archive.json()["id"])
                    if not matches:
                        failures.append(pool_id)

    def inspector(stop: threading.Event) -> None:
        # The test's own thread reads the state while the server changes it, as users' tests do.
        while not stop.is_set():
            toloka_emulator.operations()
            toloka_emulator.object("pool", "00000")
            stop.wait(0.05)

    stop = threading.Event()
    reader = threading.Thread(target=inspector, args=(stop,))
    reader.start()
    threads = [threading.Thread(target=client, args=(thread,)) for thread in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    reader.join()

    assert failures == []
    operations = toloka_emulator.operations(type="POOL.ARCHIVE")
    assert sorted(op["id"] for op in operations) == sorted(submitted)
    assert len(submitted) == THREADS * POOLS_PER_THREAD
    per_pool = Counter(op["parameters"]["pool_id"] for op in operations)
    assert set(per_pool.values()) == {1}
    assert len(toloka_emulator.requests) == THREADS * POOLS_PER_THREAD * 3
    assert all(record.status in (200, 202) for record in toloka_emulator.requests)
