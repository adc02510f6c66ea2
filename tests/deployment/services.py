"""Private PostgreSQL and Redis instances for the production-shaped deployment test.

Both are the Debian packages (``postgresql``, ``redis-server``; ``.ci/run`` installs them when missing),
run as throw-away instances in a temporary directory on free loopback ports, and stopped with the test.
PostgreSQL refuses to run as root, so when the test runs as root (CI) the cluster belongs to the
``postgres`` user the package creates and is started through ``runuser``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from .stack import free_port, wait_until


def postgres_binary(name: str) -> str:
    """``initdb``/``postgres`` from PATH or from Debian's versioned directory (not on PATH there)."""
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))[::-1]), None
    )
    if found is None:
        raise FileNotFoundError(f"{name} not found: install Debian's postgresql package (see .ci/run)")
    return found


def missing_services() -> list[str]:
    """What is not installed of what the production test needs, as Debian package names."""
    missing = []
    try:
        postgres_binary("initdb")
    except FileNotFoundError:
        missing.append("postgresql")
    if shutil.which("redis-server") is None:
        missing.append("redis-server")
    return missing


class PostgreSQL:
    """A PostgreSQL cluster with one database, ``airflow``, owned by the trusted user ``airflow``.

    It lives in its own temporary directory directly under the system's temp dir (the ``postgres`` user
    must be able to reach it, which pytest's private ``tmp_path`` does not allow), removed by ``stop()``.
    Durability is off (``fsync``, ``synchronous_commit``): the data lives as long as the test.
    """

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="toloka-postgres-"))
        self.port = free_port()
        self.data = self.root / "data"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://airflow@127.0.0.1:{self.port}/airflow"

    def _as_owner(self, command: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return command
        return ["runuser", "-u", "postgres", "--", *command]

    def start(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        subprocess.run(
            self._as_owner(
                [postgres_binary("initdb"), "-D", str(self.data), "-U", "airflow", "-A", "trust", "--no-sync"]
            ),
            check=True,
            capture_output=True,
        )
        log = (self.root / "postgres.log").open("wb")
        if os.geteuid() == 0:
            shutil.chown(self.root / "postgres.log", "postgres", "postgres")
        self.process = subprocess.Popen(
            self._as_owner(
                [
                    postgres_binary("postgres"),
                    *("-D", str(self.data), "-p", str(self.port), "-k", str(self.root)),
                    *("-c", "listen_addresses=127.0.0.1", "-c", "max_connections=300"),
                    *("-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"),
                ]
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        wait_until("PostgreSQL accepts connections", self._create_database, 60)

    def _create_database(self) -> bool:
        import psycopg2

        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"postgres exited: {(self.root / 'postgres.log').read_text()[-2000:]}")
        try:
            connection = psycopg2.connect(host="127.0.0.1", port=self.port, user="airflow", dbname="postgres")
        except psycopg2.OperationalError:
            return False
        connection.autocommit = True  # CREATE DATABASE runs outside a transaction
        try:
            with connection.cursor() as cursor:
                cursor.execute("CREATE DATABASE airflow")
        finally:
            connection.close()
        return True

    def query(self, sql: str) -> list[tuple[object, ...]]:
        """Rows of one read-only query on the Airflow database (what the REST API does not show)."""
        import psycopg2

        connection = psycopg2.connect(host="127.0.0.1", port=self.port, user="airflow", dbname="airflow")
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql)
                return list(cursor.fetchall())
        finally:
            connection.close()

    def stop(self) -> None:
        _stop(self.process, signal.SIGINT)  # SIGINT: PostgreSQL's "fast" shutdown
        shutil.rmtree(self.root, ignore_errors=True)


class Redis:
    """A Redis server on a free loopback port, persisting nothing: the Celery broker, the shared budget.

    :param password: asked of every client (``--requirepass``); ``None``: no password. Never in ``url``: a
        connection gives it in ``rate_limit_storage_password`` (``budget_extra``), redis-py as ``password=``.
    """

    def __init__(self, root: Path, password: str | None = None) -> None:
        self.root = root
        self.port = free_port()
        self.password = password
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def budget_extra(self, database: int = 0) -> dict[str, str]:
        """A ``toloka`` connection's extras for a shared budget in this Redis (``database``), password too."""
        extra = {"rate_limit_storage_uri": f"redis://127.0.0.1:{self.port}/{database}"}
        if self.password:
            extra["rate_limit_storage_password"] = self.password
        return extra

    def client(self) -> Any:
        """A redis-py client of database 0, signed in."""
        import redis

        return redis.Redis.from_url(self.url, password=self.password)

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        log = (self.root / "redis.log").open("wb")
        self.process = subprocess.Popen(
            [
                "redis-server",
                *("--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.root)),
                *("--save", "", "--appendonly", "no", "--daemonize", "no"),
                *(("--requirepass", self.password) if self.password else ()),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        wait_until("Redis answers PING", self._pong, 30, every=0.2)

    def _pong(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
            if self.password:
                sock.sendall(f"AUTH {self.password}\r\n".encode())
                if not sock.recv(16).startswith(b"+OK"):
                    return False
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")

    def stop(self) -> None:
        _stop(self.process, signal.SIGTERM)

    def kill(self) -> None:
        """Gone at once, as a crashed or unreachable store is (``start`` brings it back on the same port)."""
        _stop(self.process, signal.SIGKILL)


def _stop(process: subprocess.Popen[bytes] | None, sig: signal.Signals) -> None:
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)
