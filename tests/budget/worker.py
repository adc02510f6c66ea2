"""One Airflow worker process for the shared-budget tests: a cascade's threads reading through one hook.

Run as ``python worker.py REQUESTS THREADS``: it reads the ``toloka_default`` connection from the
environment, prints ``ready``, waits for a line on stdin (so both processes start together, however long
each took to import Airflow), sends REQUESTS reads from THREADS threads sharing one ``SharedThrottle``
(as a cascade's workers do) and prints how many it sent.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor

from airflow_provider_toloka.hooks.toloka import TolokaHook
from airflow_provider_toloka.throttle import SharedThrottle


def main() -> None:
    requests, threads = int(sys.argv[1]), int(sys.argv[2])
    hook = TolokaHook(throttle=SharedThrottle(), max_connections=threads)
    hook.settings  # noqa: B018 - the connection is read (and checked) before the start line
    print("ready", flush=True)
    sys.stdin.readline()
    with ThreadPoolExecutor(threads) as pool:
        done = list(pool.map(lambda _: hook.get_pool("10"), range(requests)))
    print(f"sent {len(done)}", flush=True)


if __name__ == "__main__":
    main()
