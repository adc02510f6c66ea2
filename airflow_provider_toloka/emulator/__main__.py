"""``python -m airflow_provider_toloka.emulator``: a Toloka API on localhost for demos and manual testing."""

from __future__ import annotations

import argparse
import signal
import threading
from types import FrameType

from airflow_provider_toloka.emulator.server import TolokaEmulator


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m airflow_provider_toloka.emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port (default: 8765)")
    parser.add_argument("--seed", help="'demo' or a path to a JSON seed file")
    parser.add_argument(
        "--token", action="append", help="accepted token; repeat for more (default: test-token)"
    )
    parser.add_argument(
        "--account",
        action="append",
        help="a shared account the tokens' user may act under (X-Act-Under-Account-ID); repeat for more",
    )
    parser.add_argument(
        "--operation-duration",
        type=float,
        default=2.0,
        help="seconds an operation takes, long enough to watch it run (default: 2.0)",
    )
    parser.add_argument(
        "--operation-duration-spread",
        type=float,
        default=0.0,
        help="each operation lasts up to this many seconds longer, at random (default: 0)",
    )
    parser.add_argument(
        "--rate-limit", type=float, help="requests per second before 429 (default: unlimited)"
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every request")
    parser.add_argument(
        "--outage-seconds",
        type=float,
        default=60.0,
        help="on SIGUSR1, stop listening for this long (connections refused), then serve again on the same "
        "port with the same objects and operations: a Toloka outage for fault tests (default: 60)",
    )
    parser.add_argument(
        "--no-control", action="store_true", help="do not serve the control API under /_emulator/"
    )
    parser.add_argument(
        "--control-token",
        help="require 'Authorization: Bearer <this>' on /_emulator/ requests (default: none, local use)",
    )
    args = parser.parse_args(argv)
    if args.no_control and args.control_token:
        parser.error("--control-token needs the control API: drop --no-control")

    emulator = TolokaEmulator(
        tokens=args.token or ("test-token",),
        operation_duration=args.operation_duration,
        port=args.port,
        seed=args.seed,
        host=args.host,
        control=not args.no_control,
        control_token=args.control_token,
        accounts=args.account or (),
    )
    emulator.operation_duration_spread = args.operation_duration_spread
    emulator.rate_limit = args.rate_limit
    emulator.latency = args.latency
    stopping = threading.Event()
    outage = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    def request_outage(signum: int, frame: FrameType | None) -> None:
        outage.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGUSR1, request_outage)
    with emulator:
        print(
            f"Toloka emulator serving {emulator.url}/api/v1 (token {emulator.token!r}); Ctrl-C stops it",
            flush=True,
        )
        print(f"AIRFLOW_CONN_TOLOKA_DEFAULT='{emulator.airflow_conn_json()}'", flush=True)
        if emulator.control:
            print(f"Control API: {emulator.url}/_emulator/ (see docs/emulator.md)", flush=True)
        # Wait in slices: the kernel may hand SIGTERM to the server's thread, and Python runs the handler only
        # when the main thread next executes bytecode, which a bare wait() would postpone forever.
        while not stopping.wait(0.2):
            if outage.is_set():
                outage.clear()
                # The state lives in this process, so an outage keeps it, unlike a restart of the process.
                emulator.stop()
                print(f"Outage: not listening for {args.outage_seconds:g} s", flush=True)
                if stopping.wait(args.outage_seconds):
                    break
                emulator.start()
                print("Outage over: serving again", flush=True)
    print("Toloka emulator stopped", flush=True)


if __name__ == "__main__":
    main()
