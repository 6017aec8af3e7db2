"""Real servers on loopback for the scale-out tests: PostgreSQL (Debian's packages) and `mlflow server`.

`postgres()` runs initdb into a fresh temporary folder and starts the server on 127.0.0.1 on a free port,
trust authentication, fsync off (throw-away data). As root it runs them as the `postgres` system user, since
PostgreSQL refuses to run as root. `mlflow_server()` starts a tracking server against a backend store URI
with its own served artifact root. Both stop and delete everything on exit.

Availability: `postgres_binaries()` is None where PostgreSQL's server programs are missing; tests then skip,
unless UNLEARN_LAB_REQUIRE_SERVERS=1 (set by .ci/run), where they fail.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

REQUIRED = os.environ.get("UNLEARN_LAB_REQUIRE_SERVERS") == "1"


def postgres_binaries() -> Path | None:
    """The folder holding initdb and postgres: PATH first, then Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which("initdb")
    if found and shutil.which("postgres"):
        return Path(found).resolve().parent
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(folder, "initdb").is_file() and Path(folder, "postgres").is_file():
            return Path(folder)
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_db_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


def wait_until(
    check: Callable[[], object],
    timeout: float,
    what: str,
    proc: subprocess.Popen | None = None,
    log: Path | None = None,
) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text()[-2000:] if log and log.exists() else ""
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{tail}")
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{what} not ready after {timeout} s")


@contextlib.contextmanager
def postgres(databases: tuple[str, ...] = ("optuna", "mlflow")) -> Iterator[dict[str, str]]:
    """Yield {name: 'postgresql+psycopg2://...'} for fresh databases on a throw-away local server."""
    bindir = postgres_binaries()
    if bindir is None:
        raise RuntimeError("PostgreSQL server programs (initdb, postgres) not found")
    root = Path(tempfile.mkdtemp(prefix="unlearn-lab-pg-"))
    data = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    user, port = "unlearn", free_port()
    proc = None
    try:
        subprocess.run(
            _as_db_user(
                [str(bindir / "initdb"), "-D", str(data), "-U", user, "--auth=trust", "-E", "UTF8", "--no-sync"]
            ),
            check=True,
            capture_output=True,
            timeout=120,
        )
        proc = _start_postgres(bindir, root, port)
        _create_databases(f"host=127.0.0.1 port={port} user={user} dbname=postgres", databases, proc, root)
        yield {name: f"postgresql+psycopg2://{user}@127.0.0.1:{port}/{name}" for name in databases}
    finally:
        if proc is not None:
            _stop_postgres(proc, data)
        shutil.rmtree(root, ignore_errors=True)


def _start_postgres(bindir: Path, root: Path, port: int) -> subprocess.Popen:
    """The server on 127.0.0.1:`port` over `root`/data, its socket in `root`, logging to `root`/postgres.log;
    throw-away settings (no fsync)."""
    settings = ["listen_addresses=127.0.0.1", "fsync=off", "synchronous_commit=off", "full_page_writes=off"]
    settings.append("max_connections=200")
    cmd = [str(bindir / "postgres"), "-D", str(root / "data"), "-p", str(port), "-k", str(root)]
    cmd += [x for setting in settings for x in ("-c", setting)]
    with open(root / "postgres.log", "wb") as out:
        return subprocess.Popen(_as_db_user(cmd), stdout=out, stderr=subprocess.STDOUT)


def _create_databases(dsn: str, databases: tuple[str, ...], proc: subprocess.Popen, root: Path) -> None:
    """Wait for the server to accept connections, then create `databases`."""
    import psycopg2

    wait_until(lambda: psycopg2.connect(dsn).close() is None, 60, "postgres", proc, root / "postgres.log")
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        for name in databases:
            cur.execute(f"CREATE DATABASE {name}")
    conn.close()


def _stop_postgres(proc: subprocess.Popen, data: Path) -> None:
    """Fast shutdown (as root, proc is runuser: signal the postmaster itself); killed after 30 s."""
    pidfile = data / "postmaster.pid"
    with contextlib.suppress(OSError, ValueError, IndexError):
        os.kill(int(pidfile.read_text().split()[0]), signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class MlflowServer:
    """`mlflow server` on 127.0.0.1: start(), stop() (SIGKILL, like a lost host), restart on the same port."""

    def __init__(self, backend_uri: str, artifacts: Path, port: int | None = None):
        self.backend_uri, self.artifacts = backend_uri, Path(artifacts)
        self.port = port or free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = self.artifacts.parent / f"mlflow-server-{self.port}.log"

    def start(self, timeout: float = 120) -> MlflowServer:
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        env.pop("MLFLOW_TRACKING_URI", None)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "mlflow",
                    "server",
                    "--backend-store-uri",
                    self.backend_uri,
                    "--artifacts-destination",
                    str(self.artifacts),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--workers",
                    "1",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        wait_until(self.healthy, timeout, "mlflow server", self.proc, self.log)
        return self

    def healthy(self) -> bool:
        with urllib.request.urlopen(self.uri + "/health", timeout=2) as response:
            return response.status == 200

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.proc = None


@contextlib.contextmanager
def mlflow_server(backend_uri: str, artifacts: Path) -> Iterator[MlflowServer]:
    server = MlflowServer(backend_uri, artifacts)
    try:
        yield server.start()
    finally:
        server.stop()
