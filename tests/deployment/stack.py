"""A real Airflow deployment on this machine: api-server, scheduler, dag-processor and triggerer.

Used by the deployment test and by ``./dev live``. Everything lives in a throw-away ``AIRFLOW_HOME``
(SQLite, ``LocalExecutor``, loopback ports picked at start), talks to Toloka emulators started as
subprocesses, and reads the ``toloka`` connections from the metadata DB, stored there with
``airflow connections import``: the same path a production task takes through the Execution API.

Airflow 3 allows ``LocalExecutor`` on SQLite (``airflow standalone`` runs that way); SQLite has one
writer, so components wait on each other a little, which is fine at this scale.

The production-shaped test passes a PostgreSQL URL and a Redis broker (``tests/deployment/services.py``):
the same stack then runs ``CeleryExecutor`` with ``celery_workers`` workers and ``triggerers`` triggerers,
each process under its own host name (``hostname_callable``), so a test can tell which worker ran a try
and which triggerer holds a trigger, and kill or restart one by name.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_DAGS = REPO / "example_dags"
TEST_DAGS = Path(__file__).with_name("dags")
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
# Imported by every Airflow process (PYTHONPATH) as its [core] hostname_callable: the process's own name.
HOSTNAME_MODULE = """import os


def hostname() -> str:
    return os.environ["TOLOKA_DEPLOY_HOSTNAME"]
"""
# The Airflow pool the example DAGs run their Toloka tasks in (they read TOLOKA_POOL when parsed).
TOLOKA_POOL = "toloka"


def free_port() -> int:
    """A loopback port nobody listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(what: str, check: Callable[[], Any], deadline: float, every: float = 0.5) -> Any:
    """Call ``check`` until it returns something truthy; raise naming ``what`` after ``deadline`` seconds."""
    give_up = time.monotonic() + deadline
    last_error: Exception | None = None
    while time.monotonic() < give_up:
        try:
            result = check()
        except (requests.RequestException, OSError) as error:
            last_error, result = error, None
        if result:
            return result
        time.sleep(every)
    raise TimeoutError(f"{what}: not done after {deadline:.0f} s (last error: {last_error!r})")


@dataclass
class Emulator:
    """A Toloka emulator subprocess: one Toloka account, reachable over HTTP with ``token``."""

    name: str
    seed: str
    operation_duration: float
    outage_seconds: float = 60.0  # how long SIGUSR1 takes it off the network (state kept)
    # More connection extras for the deployment's connection to it (a declared rate, a shared budget).
    extra: dict[str, Any] = field(default_factory=dict)
    token: str = field(default_factory=lambda: f"deploy-{secrets.token_hex(12)}")
    port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "airflow_provider_toloka.emulator",
            "--port",
            str(self.port),
            "--seed",
            self.seed,
            "--token",
            self.token,
            "--operation-duration",
            str(self.operation_duration),
            "--outage-seconds",
            str(self.outage_seconds),
        ]

    def get(self, path: str, **params: Any) -> Any:
        response = requests.get(
            f"{self.url}/api/v1{path}",
            params=params,
            headers={"Authorization": f"OAuth {self.token}"},
            timeout=10,
        )
        response.raise_for_status()
        return response.json()

    def answers(self) -> bool:
        """Whether it is up and accepts the token (raises while it is not listening yet)."""
        self.get("/operations")
        return True

    def operations(self) -> list[dict[str, Any]]:
        return list(self.get("/operations")["items"])

    def request_log(self) -> list[dict[str, Any]]:
        """Every Toloka request it has served, in order (its control API): method, path, status, time."""
        response = requests.get(f"{self.url}/_emulator/requests", timeout=10)
        response.raise_for_status()
        return list(response.json()["items"])

    def advance_clock(self, seconds: float) -> None:
        """Move the emulator's time forward (its control API): operations due by then end at once."""
        response = requests.post(f"{self.url}/_emulator/clock/advance", json={"seconds": seconds}, timeout=10)
        response.raise_for_status()

    def object(self, kind: str, object_id: str) -> dict[str, Any]:
        return dict(self.get(f"/{kind}s/{object_id}"))


class AirflowStack:
    """Start with ``start()`` (or ``with``), stop with ``stop()``: every process it started goes away.

    :param home: an empty directory to use as ``AIRFLOW_HOME``.
    :param emulators: connection id -> Toloka emulator to start and store as that ``toloka`` connection.
    :param api_port: the api-server's port; a free one by default.
    :param extra_dags: DAG files copied next to the example DAGs in the deployment's DAGS_FOLDER.
    :param pool_slots: size of the ``toloka`` pool, as docs/deployment.md recommends creating it.
    :param database_url: the metadata DB's SQLAlchemy URL; a SQLite file in ``home`` by default.
    :param celery_broker_url: run ``CeleryExecutor`` with this broker (and the metadata DB as the result
        backend) instead of ``LocalExecutor``.
    :param celery_workers: ``airflow celery worker`` processes, named ``celery-worker-1``, ...
    :param worker_concurrency: task slots of each Celery worker.
    :param triggerers: triggerer processes; more than one are named ``triggerer-1``, ...
    :param settings: more Airflow settings, ``{"AIRFLOW__SECTION__KEY": value}``.
    """

    def __init__(
        self,
        home: Path,
        emulators: dict[str, Emulator],
        api_port: int | None = None,
        extra_dags: Iterable[Path] = (),
        pool_slots: int = 4,
        *,
        database_url: str | None = None,
        celery_broker_url: str | None = None,
        celery_workers: int = 2,
        worker_concurrency: int = 8,
        triggerers: int = 1,
        settings: dict[str, str] | None = None,
    ) -> None:
        self.home = home
        self.emulators = emulators
        self.api_port = api_port or free_port()
        self.extra_dags = tuple(extra_dags)
        self.pool_slots = pool_slots
        self.database_url = database_url or f"sqlite:///{home / 'airflow.db'}"
        self.celery_broker_url = celery_broker_url
        self.celery_workers = celery_workers if celery_broker_url else 0
        self.worker_concurrency = worker_concurrency
        self.triggerers = triggerers
        self.settings = settings or {}
        self.dags_folder = home / "dags"
        self.output_dir = home / "components"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.commands: dict[str, tuple[list[str], dict[str, str]]] = {}  # name -> command, own env
        self.timings: dict[str, float] = {}  # seconds each start-up phase took, for the curious
        self.env = self._environment()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def _environment(self) -> dict[str, str]:
        # Nothing of the caller's Airflow set-up may leak in: no AIRFLOW_CONN_* (the connection must come
        # from the DB), no unit-test mode, no other AIRFLOW_HOME.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "_AIRFLOW"))}
        fernet_key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": "8",
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__CORE__FERNET_KEY": fernet_key,
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.database_url,
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API__BASE_URL": self.api_url,
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "PYTHONUNBUFFERED": "1",
                "TOLOKA_POOL": TOLOKA_POOL,
                "PYTHONPATH": os.pathsep.join(filter(None, [str(self.home / "lib"), env.get("PYTHONPATH")])),
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": "toloka_deploy_hostname.hostname",
                "TOLOKA_DEPLOY_HOSTNAME": "airflow",
            }
        )
        if self.celery_broker_url:
            env.update(
                {
                    "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                    "AIRFLOW__CORE__PARALLELISM": str(self.celery_workers * self.worker_concurrency),
                    "AIRFLOW__CELERY__BROKER_URL": self.celery_broker_url,
                    "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + self.database_url,
                    "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.worker_concurrency),
                }
            )
        env.update(self.settings)
        return env

    def components(self) -> dict[str, tuple[list[str], dict[str, str]]]:
        """Every long-running Airflow process: name -> (command, environment of its own)."""
        airflow = [sys.executable, "-m", "airflow"]
        found: dict[str, tuple[list[str], dict[str, str]]] = {
            name: ([*airflow, name], {}) for name in COMPONENTS if name != "triggerer"
        }
        for index in range(1, self.triggerers + 1):
            name = "triggerer" if self.triggerers == 1 else f"triggerer-{index}"
            # Each serves its logs on a port of its own: they share the host.
            port = {"AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port())} if index > 1 else {}
            found[name] = ([*airflow, "triggerer"], port)
        for index in range(1, self.celery_workers + 1):
            name = f"celery-worker-{index}"
            found[name] = (
                [*airflow, "celery", "worker", "--celery-hostname", f"{name}@%h"],
                {"AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port())},
            )
        return {
            name: (command, {**own, "TOLOKA_DEPLOY_HOSTNAME": name}) for name, (command, own) in found.items()
        }

    # --- lifecycle --------------------------------------------------------------------------------

    def start(self, parse_deadline: float = 180.0) -> None:
        """Migrate the DB, store the connections, start everything and wait until the DAGs are parsed."""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.dags_folder.mkdir(parents=True, exist_ok=True)
        (self.home / "lib").mkdir(exist_ok=True)
        (self.home / "lib" / "toloka_deploy_hostname.py").write_text(HOSTNAME_MODULE)
        for source in [*sorted(EXAMPLE_DAGS.glob("*.py")), *self.extra_dags]:
            shutil.copy(source, self.dags_folder / source.name)
        started = time.monotonic()

        def phase(name: str) -> None:
            self.timings[name] = round(time.monotonic() - started - sum(self.timings.values()), 1)

        try:
            for name, emulator in self.emulators.items():
                self._spawn(f"emulator-{name}", emulator.command())
            self._airflow("db", "migrate")
            phase("db migrate")
            self.commands = self.components()
            # The connections are stored while the other components boot, but before the dag-processor
            # starts: a DAG file may read one at parse time (toloka_asset_uri), and a parse that ran first
            # would bind the DAG to its fallback asset until the file is parsed again.
            for name in self.commands:
                if name != "dag-processor":
                    self.spawn(name)
            self._add_connections()
            phase("connections import")
            if "dag-processor" in self.commands:
                self.spawn("dag-processor")
            for name, emulator in self.emulators.items():
                wait_until(f"emulator {name} answers", emulator.answers, 30)
            wait_until("api-server is healthy", self.healthy, parse_deadline)
            phase("api-server up")
            description = "Bounds Toloka API traffic across all workers (docs/deployment.md)"
            self.api(
                "POST", "/pools", {"name": TOLOKA_POOL, "slots": self.pool_slots, "description": description}
            )
            wait_until("example DAGs are parsed", self._dags_parsed, parse_deadline, every=1)
            phase("DAGs parsed")
        except BaseException:
            self.stop()
            raise

    def __enter__(self) -> AirflowStack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self, grace: float = 15.0) -> None:
        """Terminate every process group started here; kill whatever is still alive after ``grace``."""
        for process in self.processes.values():
            _signal_group(process, signal.SIGTERM)
        give_up = time.monotonic() + grace
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(max(0.1, give_up - time.monotonic()))
        for process in self.processes.values():
            # Also the group's leftovers (task runners, log servers) whose leader has already gone.
            _signal_group(process, signal.SIGKILL)
            if process.poll() is None:
                process.wait(5)

    def restart_emulator(self, conn_id: str) -> None:
        """Start one emulator afresh (same port and token), reading its seed file again.

        For a test whose objects depend on when it runs (a rejection window that ends in a few seconds):
        it writes the seed once the deployment is up, then calls this.
        """
        process = self.processes[f"emulator-{conn_id}"]
        _signal_group(process, signal.SIGTERM)
        process.wait(15)
        emulator = self.emulators[conn_id]
        self._spawn(f"emulator-{conn_id}", emulator.command())
        wait_until(f"emulator {conn_id} answers", emulator.answers, 30)

    def check_alive(self) -> None:
        """Raise if a component has exited: a dead scheduler would otherwise just look slow."""
        dead = {name: p.returncode for name, p in self.processes.items() if p.poll() is not None}
        if dead:
            raise RuntimeError(f"components exited: {dead}\n{self.log_tails()}")

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL, grace: float = 30.0) -> None:
        """Send ``sig`` to a component's whole process group (its task subprocesses too); wait for it."""
        process = self.processes[name]
        _signal_group(process, sig)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait(5)
        if sig is not signal.SIGKILL:
            _signal_group(process, signal.SIGKILL)  # whatever of the group outlived its leader

    # --- helpers ----------------------------------------------------------------------------------

    def spawn(self, name: str) -> None:
        """(Re)start one process by name (``scheduler``, ``emulator-toloka_default``), output appended
        to ``components/<name>.log``."""
        if name.startswith("emulator-"):
            command, own_env = self.emulators[name.removeprefix("emulator-")].command(), {}
        else:
            command, own_env = self.commands[name]
        self._spawn(name, command, own_env)

    def _spawn(self, name: str, command: list[str], own_env: dict[str, str] | None = None) -> None:
        output = (self.output_dir / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            command,
            env={**self.env, **(own_env or {})},
            cwd=self.home,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so stop() reaches the task subprocesses too
        )
        output.close()

    def _airflow(self, *args: str) -> None:
        result = subprocess.run(
            [sys.executable, "-m", "airflow", *args],
            env=self.env,
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            # The arguments may hold a token: name the command only.
            raise RuntimeError(f"airflow {args[0]} {args[1]} failed:\n{result.stdout}\n{result.stderr}")

    def _add_connections(self) -> None:
        """Store one ``toloka`` connection per emulator in the metadata DB, in one CLI call."""
        connections = {
            conn_id: {
                "conn_type": "toloka",
                "host": emulator.url,
                "password": emulator.token,
                "extra": json.dumps({"auth_scheme": "OAuth", **emulator.extra}),
            }
            for conn_id, emulator in self.emulators.items()
        }
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / "connections.json"
            path.write_text(json.dumps(connections))
            self._airflow("connections", "import", str(path))

    def healthy(self) -> bool:
        self.check_alive()
        return requests.get(f"{self.api_url}/api/v2/monitor/health", timeout=5).ok

    def _dags_parsed(self) -> bool:
        self.check_alive()
        errors = self.api("GET", "/importErrors")
        if errors["total_entries"]:
            raise RuntimeError(f"DAG import errors: {json.dumps(errors['import_errors'], indent=1)}")
        expected = {str(path) for path in self.dags_folder.glob("*.py")}
        parsed = {dag["fileloc"] for dag in self.api("GET", "/dags", limit=100)["dags"]}
        return expected <= parsed

    def api(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        """Call the public REST API (``/api/v2``); SimpleAuthManager's all-admins mode needs no login."""

        def send() -> requests.Response:
            headers = {"Authorization": f"Bearer {self._jwt}"} if getattr(self, "_jwt", None) else None
            return requests.request(
                method,
                f"{self.api_url}/api/v2{path}",
                json=body,
                params=params or None,
                headers=headers,
                timeout=30,
            )

        response = send()
        if response.status_code == 401:
            # Airflow 3.0 asks for a JWT even in all-admins mode: its simple auth manager hands one to
            # anybody at GET /auth/token (3.1+ lets the requests through without one).
            token = requests.get(f"{self.api_url}/auth/token", timeout=30)
            token.raise_for_status()
            self._jwt = token.json()["access_token"]
            response = send()
        if not response.ok:
            raise RuntimeError(f"{method} {path} -> {response.status_code}: {response.text[:2000]}")
        return response.json() if response.content else None

    def log_tails(self, lines: int = 40) -> str:
        """The last ``lines`` of each component's output, for a failure message."""
        parts = []
        for path in sorted(self.output_dir.glob("*.log")):
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"===== {path.name} (last {len(tail)} lines) =====\n" + "\n".join(tail))
        return "\n".join(parts)


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
