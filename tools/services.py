"""Start private instances of the servers the product needs: Redis and PostgreSQL, and Azurite (the
Azure Storage emulator) for the vault's tests and benchmarks.

Used by `make run` (tools/run.py) and by the test suite, so both run on real servers
without touching any system-wide instance. No Django imports.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ServiceError(Exception):
    """A server could not be started; the message says why and what to install."""


PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: if the parent dies (even by SIGKILL), the kernel
    # sends this child SIGTERM, so a crashed `make run` or test run leaves no server behind.
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def child_process_options() -> dict[str, Any]:
    """Popen options for the servers we start: own process group (a Ctrl-C reaches only the
    supervisor, which stops them in order) and death with the parent."""
    return {"process_group": 0, "preexec_fn": _die_with_parent}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop(process: subprocess.Popen | None) -> None:
    """Terminate a service we started, killing it if it does not exit within 10 seconds."""
    if process and process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait(check, what: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            raise ServiceError(f"{what} exited with code {proc.returncode} while starting")
        time.sleep(0.05)
    raise ServiceError(f"{what} did not start within {timeout:.0f} s")


def _proc_text(pid: int, name: str) -> str:
    """A /proc file of a process as text ("" once the process is gone or not ours to read)."""
    try:
        return (Path("/proc") / str(pid) / name).read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def process_environment(pid: int) -> list[str]:
    """A process's environment as `NAME=value` entries (empty once it is gone or not ours to read)."""
    try:
        return (Path("/proc") / str(pid) / "environ").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def process_is_running(pid: int) -> bool:
    """True while the process exists and is not a zombie (a zombie's sockets and files are closed)."""
    status = _proc_text(pid, "status")
    state = next((line for line in status.splitlines() if line.startswith("State:")), "")
    return bool(state) and "zombie" not in state


def processes_where(matches: Callable[[int], bool]) -> set[int]:
    """Every running process (other than this one) for which `matches(pid)` is true."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid() and matches(int(entry.name)):
            found.add(int(entry.name))
    return {pid for pid in found if process_is_running(pid)}


def terminate_processes(pids: Iterable[int], timeout: float = 10) -> None:
    """SIGTERM each process, SIGKILL what is still running after `timeout`, and return once all are gone.

    SIGCONT follows SIGTERM: a stopped process would otherwise keep the signal pending for ever.
    """
    remaining = {pid for pid in pids if process_is_running(pid)}
    for signum in (signal.SIGTERM, signal.SIGCONT):
        _signal_each(remaining, signum)
    deadline = time.monotonic() + timeout
    while remaining and time.monotonic() < deadline:
        remaining = {pid for pid in remaining if process_is_running(pid)}
        time.sleep(0.05)
    _signal_each(remaining, signal.SIGKILL)
    _wait(lambda: not any(process_is_running(pid) for pid in remaining), "a killed process", 30)


def _signal_each(pids: Iterable[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):  # gone already: nothing to signal
            os.kill(pid, signum)


@dataclass
class Redis:
    """A private redis-server listening on a Unix socket only (no TCP port to collide on).

    With `persistent=True` (what `make run` uses) it keeps its data in an append-only file in
    `directory/appendonlydir`, written at once and fsynced every second, so queued jobs survive a
    restart and lose at most the last second on a power loss. The test suite's Redis keeps nothing.
    """

    directory: Path
    persistent: bool = False
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def socket_path(self) -> Path:
        return self.directory / "redis.sock"

    @property
    def pid_path(self) -> Path:
        return self.directory / "redis.pid"

    @property
    def data_path(self) -> Path:
        """Where a persistent Redis keeps its append-only file (Redis 7 names the folder itself)."""
        return self.directory / "appendonlydir"

    def url(self, db: int = 0) -> str:
        return f"unix://{self.socket_path}?db={db}"

    def start(self, timeout: float = 120) -> Redis:
        """Start redis-server and return once it answers PING (after loading its append-only file).

        A server of this directory left by a crashed parent is stopped first and its socket removed:
        started beside it, ours would lose its socket the moment the old one exits (Redis unlinks
        its socket path on shutdown), and clients would fail with "Error 2 connecting to …".
        """
        binary = shutil.which("redis-server")
        if not binary:
            raise ServiceError("redis-server is missing: install the Debian package redis-server")
        self.directory.mkdir(parents=True, exist_ok=True)
        terminate_processes(self.running_servers())
        self.socket_path.unlink(missing_ok=True)
        self.pid_path.unlink(missing_ok=True)
        self.process = subprocess.Popen(self.command(binary), stdout=subprocess.DEVNULL, **child_process_options())
        _wait(self._answers, "redis-server", timeout, self.process)
        return self

    def command(self, binary: str = "redis-server") -> list[str]:
        """The redis-server command line: Unix socket only, append-only file when persistent."""
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "everysec"] if self.persistent else ["--appendonly", "no"]
        )
        return [binary, "--port", "0", "--unixsocket", str(self.socket_path), "--unixsocketperm", "700",
                "--dir", str(self.directory), "--pidfile", str(self.pid_path), "--save", "", *persistence,
                "--loglevel", "warning"]  # fmt: skip

    def running_servers(self) -> set[int]:
        """redis-servers still serving this directory's socket: the one its pid file names (checked,
        as the pid may have been reused) and any other found in /proc (killed before writing it)."""
        named = set()
        # No pid file, or a half-written one: the scan below still finds the server.
        with contextlib.suppress(OSError, ValueError):
            named.add(int(self.pid_path.read_text().strip()))
        return {pid for pid in named if self._serves_our_socket(pid)} | processes_where(self._serves_our_socket)

    def _serves_our_socket(self, pid: int) -> bool:
        # redis-server shows its socket in its process title ("redis-server unixsocket:/…/redis.sock").
        words = _proc_text(pid, "cmdline").split()
        ours = {str(self.socket_path), f"unixsocket:{self.socket_path}"}
        return bool(words) and "redis-server" in words[0] and not ours.isdisjoint(words)

    def _answers(self) -> bool:
        if not self.socket_path.exists():
            return False
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(5)
                sock.connect(str(self.socket_path))
                sock.sendall(b"PING\r\n")
                # "-LOADING …" while the append-only file is read: not ready yet.
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        _stop(self.process)


def _pg_bin(name: str) -> str:
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    found = shutil.which(name)
    if not found:
        raise ServiceError(f"{name} is missing: install the Debian package postgresql")
    return found


@dataclass
class Postgres:
    """A private PostgreSQL cluster on 127.0.0.1 with trust auth, for tests.

    PostgreSQL refuses to run as root, so as root the cluster belongs to the `postgres`
    user (created by the Debian package) and commands run through runuser.
    """

    directory: Path
    port: int = 0

    @property
    def datadir(self) -> Path:
        return self.directory / "data"

    def url(self, database: str = "vmbackup") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def _as_owner(self, args: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return args
        return ["runuser", "-u", "postgres", "--", *args]

    def start(self) -> Postgres:
        self.directory.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise ServiceError("no postgres user: install the Debian package postgresql") from None
            os.chown(self.directory, owner.pw_uid, owner.pw_gid)
        if not (self.datadir / "PG_VERSION").exists():
            subprocess.run(
                self._as_owner([_pg_bin("initdb"), "-D", str(self.datadir), "-U", "postgres", "-A", "trust",
                                "-E", "UTF8", "--no-sync"]),
                check=True, stdout=subprocess.DEVNULL,
            )  # fmt: skip
        self.port = self.port or free_port()
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            self._as_owner([_pg_bin("pg_ctl"), "-D", str(self.datadir), "-o", options, "-l",
                            str(self.directory / "server.log"), "-w", "start"]),
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        return self

    def stop(self) -> None:
        subprocess.run(
            self._as_owner([_pg_bin("pg_ctl"), "-D", str(self.datadir), "-m", "fast", "stop"]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip


AZURITE_BINARY = Path(__file__).resolve().parent / "azurite" / "node_modules" / ".bin" / "azurite-blob"
AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's fixed development account key, published in its documentation: not a secret.
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


@dataclass
class Azurite:
    """A private Azurite Blob service on 127.0.0.1 (a free port), keeping its data and log in `directory`,
    or its data in memory with `in_memory` (faster: about 25% for small blobs, 2x for 4 MiB ones; the
    data go with the process, and Azurite caps them at half the machine's memory).

    Installed from tools/azurite/package-lock.json by `make azurite` (npm ci). Only the Blob service
    runs; telemetry is off; `--loose` and `--skipApiVersionCheck` let a newer SDK talk to it.
    """

    directory: Path
    port: int = 0
    in_memory: bool = False
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def blob_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{AZURITE_ACCOUNT}"

    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint={self.blob_endpoint};"
        )

    def start(self) -> Azurite:
        if not os.access(AZURITE_BINARY, os.X_OK):
            raise ServiceError("azurite-blob is missing: run `make azurite` (npm ci in tools/azurite)")
        if not shutil.which("node"):
            raise ServiceError("node is missing: install the Debian package nodejs")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        # Azurite refuses --location together with --inMemoryPersistence.
        storage = ["--inMemoryPersistence"] if self.in_memory else ["--location", str(self.directory)]
        with open(self.directory / "azurite.log", "ab") as log:
            self.process = subprocess.Popen(
                [str(AZURITE_BINARY), "--silent", "--disableTelemetry", *storage, "--blobHost", "127.0.0.1",
                 "--blobPort", str(self.port), "--skipApiVersionCheck", "--loose"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, **child_process_options(),
            )  # fmt: skip
        _wait(self._answers, "azurite-blob", 30, self.process)
        return self

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        _stop(self.process)
