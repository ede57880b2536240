"""The NFS server that exports served recovery points to ESXi: a private nfs-ganesha (Debian
`nfs-ganesha` + `nfs-ganesha-vfs`), NFSv4 only, with one EXPORT per served point. No Django.

One server for every served point, exports added and removed by rewriting its configuration and
sending SIGHUP (ganesha 4.3 re-reads its EXPORT blocks then: "Reread exports complete", checked on
this machine), rather than a server per point: ESXi mounts an NFS 4.1 datastore from a host on the
standard port with no way to name another, so every point must be reachable through one server,
and a reload leaves the other points' clients undisturbed where a restart would not.

NFSv4 only, so neither rpcbind nor NLM nor rquota is needed (v3 registers with rpcbind, which a
private server must not depend on). Graceless: a restarted server serves at once instead of waiting
out a grace period for lock reclaims ESXi does not make on these read-mostly exports. Its state
(config, pid, log, v4 recovery records) lives in its own directory, never in /etc or /var/lib, so
a system-wide ganesha, running or not, is never touched.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

PR_SET_PDEATHSIG = 1
RELOADED = "Reread exports complete"
_SAFE_PATH = re.compile(r"/[A-Za-z0-9._/+-]*")


class NfsError(Exception):
    """The NFS server could not be started or changed; the message says why."""


@dataclass(frozen=True)
class Export:
    """One served point's folder: exported read-write at Path, its pseudo path the same, so the
    datastore's remote path is the local path (what tools/vcsim's NAS datastores rely on)."""

    export_id: int
    path: Path

    def block(self) -> str:
        path = str(self.path)
        if not _SAFE_PATH.fullmatch(path) or not 1 <= self.export_id <= 65535:
            raise NfsError(f"{path} cannot be exported: use an absolute path of letters, digits and ._/+-")
        return (
            f"EXPORT {{\n  Export_Id = {self.export_id};\n  Path = {path};\n  Pseudo = {path};\n"
            "  Access_Type = RW;\n  Squash = No_Root_Squash;\n  Protocols = 4;\n  Transports = TCP;\n"
            "  SecType = sys;\n  FSAL { Name = VFS; }\n}\n"
        )


def config_text(directory: Path, address: str, port: int, exports: list[Export]) -> str:
    """The whole ganesha configuration for these exports."""
    core = (
        f"NFS_CORE_PARAM {{\n  Protocols = 4;\n  Bind_addr = {address};\n  NFS_Port = {port};\n"
        "  Enable_NLM = false;\n  Enable_RQUOTA = false;\n}\n"
        f"NFSV4 {{\n  Graceless = true;\n  RecoveryRoot = {directory / 'recovery'};\n}}\n"
    )
    return core + "".join(export.block() for export in sorted(exports, key=lambda e: e.export_id))


def _die_with_parent() -> None:
    # In the child before exec: the kernel sends SIGTERM if the supervisor dies, even by SIGKILL.
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Ganesha:
    """A private ganesha.nfsd in `directory` (config, pid file, log), on address:port."""

    directory: Path
    port: int
    address: str = "127.0.0.1"
    exports: dict[int, Export] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def config_path(self) -> Path:
        return self.directory / "ganesha.conf"

    @property
    def log_path(self) -> Path:
        return self.directory / "ganesha.log"

    @property
    def pid_path(self) -> Path:
        return self.directory / "ganesha.pid"

    def url(self, path: Path | str, name: str = "") -> str:
        """A libnfs URL (nfs-ls, nfs-cat) of an exported folder or a file in it."""
        target = f"{path}/{name}" if name else str(path)
        return f"nfs://{self.address}/{target.lstrip('/')}?version=4&nfsport={self.port}"

    def start(self, timeout: float = 30) -> Ganesha:
        binary = shutil.which("ganesha.nfsd") or "/usr/bin/ganesha.nfsd"
        if not os.path.exists(binary):
            raise NfsError("ganesha.nfsd is missing: install the Debian packages nfs-ganesha and nfs-ganesha-vfs")
        (self.directory / "recovery").mkdir(parents=True, exist_ok=True)
        self._write_config()
        command = [binary, "-F", "-f", str(self.config_path), "-L", str(self.log_path), "-p", str(self.pid_path),
                   "-N", "NIV_EVENT"]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, process_group=0, preexec_fn=_die_with_parent
        )
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.process.poll() is not None:
                code = self.process.returncode
                raise NfsError(f"ganesha.nfsd exited with code {code} while starting: {self._tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise NfsError(f"ganesha.nfsd did not answer on {self.address}:{self.port} within {timeout:.0f} s")
            time.sleep(0.05)
        return self

    def _answers(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection((self.address, self.port), timeout=1):
            return True
        return False

    def _tail(self) -> str:
        with contextlib.suppress(OSError):
            lines = self.log_path.read_text(errors="replace").splitlines()
            return " | ".join(line.split(" : ")[-1] for line in lines[-3:])
        return "no log"

    def _write_config(self) -> None:
        temp = self.config_path.with_name("ganesha.conf.new")
        temp.write_text(config_text(self.directory, self.address, self.port, list(self.exports.values())))
        os.replace(temp, self.config_path)

    def add(self, path: Path) -> Export:
        """Export `path` (an existing folder, e.g. a FUSE mount); returns once ganesha serves it."""
        export = Export(max(self.exports, default=0) + 1, path)
        self.exports[export.export_id] = export
        self.reload()
        return export

    def reopen(self, export: Export) -> None:
        """After its folder was mounted again (a FUSE server restarted), ganesha still holds the dead
        mount's root and answers NFS4ERR_SERVERFAULT (seen here); a reload alone keeps that, so the
        export is dropped and added back under its id, and ganesha opens the new mount. File handles
        a client holds from before stay stale: FUSE node ids do not survive its server."""
        self.exports.pop(export.export_id, None)
        self.reload()
        self.exports[export.export_id] = export
        self.reload()

    def remove(self, export: Export) -> None:
        self.exports.pop(export.export_id, None)
        try:
            self.reload()
        except (OSError, NfsError):  # its file system full, say: still exported, so still listed
            self.exports[export.export_id] = export
            raise

    def reload(self, timeout: float = 30) -> None:
        """Rewrite the configuration and have ganesha re-read its exports (SIGHUP); waits for it."""
        self._write_config()
        if self.process is None or self.process.poll() is not None:
            return  # not running: the next start reads the new configuration
        before = self._reloads()
        self.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while self._reloads() <= before:
            if time.monotonic() > deadline:
                raise NfsError(f"ganesha.nfsd did not re-read its exports within {timeout:.0f} s: {self._tail()}")
            time.sleep(0.05)

    def _reloads(self) -> int:
        try:
            return self.log_path.read_text(errors="replace").count(RELOADED)
        except FileNotFoundError:
            return 0

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
