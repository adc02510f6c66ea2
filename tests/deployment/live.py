"""``./dev live``: the deployment test's Airflow stack with the demo emulator, left running for you.

The UI comes up on http://127.0.0.1:8080 (``--port`` to change) with the example DAGs and a ``toloka_default``
connection pointing at a local Toloka emulator seeded with the demo objects. Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType

from .stack import AirflowStack, Emulator


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="./dev live", description=__doc__)
    parser.add_argument("--port", type=int, default=8080, help="the Airflow UI's port (default: 8080)")
    parser.add_argument(
        "--operation-duration",
        type=float,
        default=5.0,
        help="seconds an emulated archive takes, long enough to watch tasks wait (default: 5)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the AIRFLOW_HOME directory at exit")
    args = parser.parse_args(argv)

    stopping = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    home = Path(tempfile.mkdtemp(prefix="toloka-live-airflow-"))
    emulator = Emulator("default", "demo", args.operation_duration)
    stack = AirflowStack(home, {"toloka_default": emulator}, api_port=args.port)
    print(f"Starting Airflow in {home} (about a minute on a busy machine) ...", flush=True)
    started = time.monotonic()
    try:
        stack.start()
        print(
            f"\nAirflow is up after {time.monotonic() - started:.0f} s: {stack.api_url}\n"
            "  Login: none needed (SimpleAuthManager with simple_auth_manager_all_admins: you are admin)\n"
            f"  Toloka emulator: {emulator.url}/api/v1, seeded with the demo objects, stored as the\n"
            "    'toloka_default' connection (Admin > Connections)\n"
            f"  Component logs: {stack.output_dir}\n"
            "Trigger a DAG from the UI; Ctrl-C stops everything.",
            flush=True,
        )
        while not stopping.wait(2):
            stack.check_alive()
    except RuntimeError:
        print(stack.log_tails())
        raise
    finally:
        print("Stopping ...", flush=True)
        stack.stop()
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
