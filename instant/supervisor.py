"""The data path of instant recoveries, owned by one long-lived process (`manage.py instant-supervisor`,
started by `make run`), not by the RQ jobs: a job ends, a VM running from a point does not.

reconcile() makes what runs match the database: for each recovery whose state needs its data
(starting, running, migrating, stopping) one `python -m instant.view.serve` process serves the point
on DIR/mount (restarted when it died, its export then reopened, as instant.nfs explains); one private
ganesha exports exactly the mounts that serve; everything else under settings.INSTANT_DIR (a finished,
stopped or failed recovery's mount, export and overlay, or a leftover of a crash, found by its
folder's name) is unmounted and removed. status.json's counters are copied to the rows.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from instant.models import InstantRecovery
from instant.nfs import Export, Ganesha, NfsError
from instant.view.serve import clear_stale_mount, unmount
from instant.view.shared_cache import trim
from vault.models import VaultSettings

log = logging.getLogger("instant.supervisor")
ROOT = Path(__file__).resolve().parent.parent
STOP_TIMEOUT = 30.0
TRIM_EVERY = 30.0  # seconds between trims of the shared cache to INSTANT_SHARED_CACHE_MB


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22), None if it is
    gone or has exited (a zombie its parent has not reaped yet)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else int(fields[19])


def shared_cache_dir() -> Path:
    """Vault chunks fetched by any server, read by all (instant.view.shared_cache)."""
    return Path(settings.INSTANT_DIR) / "cache"


def export_id(recovery_id: int) -> int:
    return (recovery_id - 1) % 65535 + 1


def vault_document() -> dict[str, Any] | None:
    """The vault as instant.view.source.VaultConfig reads it (on the server's stdin, never a file)."""
    config = VaultSettings.current()
    if not config.enabled:
        return None
    document: dict[str, Any]
    if config.kind == VaultSettings.Kind.DIRECTORY:
        document = {"kind": "directory", "directory": config.directory}
    elif config.auth == VaultSettings.Auth.CONNECTION_STRING:
        document = {"kind": "azure", "container": config.container, "connection_string": config.secret}
    else:
        document = {"kind": "azure", "container": config.container, "account_url": config.account_url}
        if config.auth != VaultSettings.Auth.DEFAULT_CREDENTIAL:
            document["account_key"] = config.secret
    if config.encrypted:
        document["encryption_key"] = config.encryption_key
    return document


def read_status(recovery: InstantRecovery) -> dict[str, Any] | None:
    """The serve process's status.json, or None when there is none (yet)."""
    try:
        status = json.loads((recovery.overlay_dir / "status.json").read_text())
    except (OSError, ValueError):
        return None
    return status if isinstance(status, dict) else None


def is_ready(recovery: InstantRecovery) -> bool:
    """Whether the point is mounted by the recorded server and exported: what the start job waits for."""
    status = read_status(recovery)
    return (
        status is not None
        and recovery.serve_pid is not None
        and status.get("pid") == recovery.serve_pid
        and recovery.export_id is not None
    )


class Supervisor:
    """The serve processes and the ganesha of this process; reconcile() is idempotent."""

    def __init__(self) -> None:
        self.children: dict[int, subprocess.Popen[bytes]] = {}
        self.reopen: set[int] = set()  # restarted servers whose export must be reopened
        self.ganesha: Ganesha | None = None
        self.next_trim = 0.0  # monotonic time of the shared cache's next trim

    def reconcile(self) -> None:
        served = list(InstantRecovery.objects.filter(state__in=InstantRecovery.SERVED))
        for recovery in served:
            self._serve(recovery)
        mounted = [r for r in served if self._mounted(r)]
        try:
            self._export(mounted)
        except NfsError as exc:  # port 2049 taken, say: the starts waiting for it fail with the sentence
            log.error("instant recoveries cannot be exported: %s", exc)
            waiting = [r.pk for r in mounted if r.state == InstantRecovery.State.STARTING]
            InstantRecovery.objects.filter(pk__in=waiting, error="").update(
                error=f"The NFS server could not export the point: {exc}"
            )
        keep = {r.pk for r in served} | set(
            InstantRecovery.objects.filter(state=InstantRecovery.State.QUEUED).values_list("pk", flat=True)
        )
        self._tear_down_all_but(keep)
        for recovery in served:
            self._copy_status(recovery)
        if time.monotonic() >= self.next_trim:
            self.next_trim = time.monotonic() + TRIM_EVERY
            trim(shared_cache_dir(), settings.INSTANT_SHARED_CACHE_MB << 20)

    # Serving ---------------------------------------------------------------------------------------

    def _alive(self, recovery: InstantRecovery) -> bool:
        child = self.children.get(recovery.pk)
        if child is not None and child.poll() is None:
            return True
        pid = recovery.serve_pid
        # A server started by an earlier supervisor (which died) is adopted if it is the same process.
        return (
            child is None
            and pid is not None
            and start_ticks(pid) == recovery.serve_start_ticks
            and b"instant.view.serve" in Path(f"/proc/{pid}/cmdline").read_bytes()
        )

    def _serve(self, recovery: InstantRecovery) -> None:
        if self._alive(recovery) or recovery.point_id is None:  # pinned while served: never None here
            return
        child = self.children.pop(recovery.pk, None)
        reason = ""
        if child is not None:
            reason = _last_line(recovery.directory / "serve.log") or f"exit status {child.returncode}"
            if child.returncode == 2 and recovery.state == InstantRecovery.State.STARTING:
                # Unservable: starting it again would only fail again; the job reports the sentence.
                InstantRecovery.objects.filter(pk=recovery.pk).update(error=reason)
                recovery.error = reason
                return
        if recovery.error and recovery.state == InstantRecovery.State.STARTING:
            return
        if recovery.serve_pid is not None:  # it served and died (shutdown() clears the pid of those it stops)
            reason = f"the server of its point exited ({reason or 'killed'})"
            log.warning("instant recovery %s: %s; restarting it", recovery.pk, reason)
            _record_restart([recovery.pk], reason)
        self._start_server(recovery)

    def _start_server(self, recovery: InstantRecovery) -> None:
        recovery.overlay_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            clear_stale_mount(recovery.export_path)
        document = vault_document()
        command = [sys.executable, "-m", "instant.view.serve", "--store", str(settings.BACKUP_STORE_DIR),
                   "--point", str(recovery.point_id), "--mount", str(recovery.export_path),
                   "--overlay", str(recovery.overlay_dir)]  # fmt: skip
        if document is not None:
            command += ["--vault-config", "-", "--shared-cache", str(shared_cache_dir())]
        with open(recovery.directory / "serve.log", "ab") as errors:
            child = subprocess.Popen(
                command,
                cwd=ROOT,
                stdin=subprocess.PIPE if document is not None else subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=errors,
                start_new_session=True,  # a restarted supervisor adopts it; SIGTERM here reaches only it
            )
        if document is not None and child.stdin is not None:
            child.stdin.write(json.dumps(document).encode())
            child.stdin.close()
        self.children[recovery.pk] = child
        if recovery.export_id is not None:
            self.reopen.add(recovery.pk)
        recovery.serve_pid, recovery.serve_start_ticks = child.pid, start_ticks(child.pid)
        InstantRecovery.objects.filter(pk=recovery.pk).update(
            serve_pid=recovery.serve_pid, serve_start_ticks=recovery.serve_start_ticks
        )

    def _mounted(self, recovery: InstantRecovery) -> bool:
        status = read_status(recovery)
        return status is not None and status.get("pid") == recovery.serve_pid and os.path.ismount(recovery.export_path)

    # Exporting -------------------------------------------------------------------------------------

    def _export(self, mounted: list[InstantRecovery]) -> None:
        wanted = {export_id(r.pk): r for r in mounted}
        ganesha = self.ganesha
        if ganesha is not None and (ganesha.process is None or ganesha.process.poll() is not None):
            if ganesha.process is not None:
                reason = f"the NFS server (nfs-ganesha) exited with status {ganesha.process.returncode}"
                log.warning("%s: starting it again", reason)
                _record_restart([r.pk for r in mounted if export_id(r.pk) in ganesha.exports], reason)
            ganesha.process = None
            self.reopen.clear()  # a new ganesha opens every mount afresh
            ganesha.start()
        if ganesha is None and wanted:
            directory = Path(settings.INSTANT_DIR) / "ganesha"
            ganesha = Ganesha(directory, settings.INSTANT_NFS_PORT, settings.INSTANT_NFS_ADDRESS)
            ganesha.exports = {key: Export(key, r.export_path) for key, r in wanted.items()}
            self.ganesha = ganesha.start()
            self.reopen.clear()
        if ganesha is None:
            return
        for key, recovery in wanted.items():
            if key not in ganesha.exports:
                ganesha.exports[key] = Export(key, recovery.export_path)
                ganesha.reload()
            elif recovery.pk in self.reopen:
                ganesha.reopen(ganesha.exports[key])
            self.reopen.discard(recovery.pk)
            if recovery.export_id != key:
                recovery.export_id = key
                InstantRecovery.objects.filter(pk=recovery.pk).update(export_id=key)

    def _unexport(self, recovery_id: int) -> None:
        ganesha = self.ganesha
        if ganesha is None:
            return
        export = ganesha.exports.get(export_id(recovery_id))
        if export is not None:
            ganesha.remove(export)
        if not ganesha.exports:
            ganesha.stop()
            self.ganesha = None

    # Tearing down ----------------------------------------------------------------------------------

    def _tear_down_all_but(self, keep: set[int]) -> None:
        root = Path(settings.INSTANT_DIR)
        found = {int(p.name) for p in root.iterdir() if p.name.isdigit()} if root.is_dir() else set()
        found |= set(self.children)
        recorded = InstantRecovery.objects.exclude(pk__in=keep).filter(
            Q(serve_pid__isnull=False) | Q(export_id__isnull=False)
        )
        found |= set(recorded.values_list("pk", flat=True))
        for recovery_id in sorted(found - keep):
            self.tear_down(recovery_id)

    def tear_down(self, recovery_id: int) -> None:
        """Stop the server, unmount, remove the folder (overlay included), unexport; clear the row.
        The export goes last: removing the overlay first frees the space ganesha's configuration and
        log need when a full overlay filled their file system (until then the pass fails, and the
        next one tries again)."""
        row = InstantRecovery.objects.filter(pk=recovery_id).first()
        child = self.children.pop(recovery_id, None)
        if child is not None:
            _stop(child)
        elif row is not None and row.serve_pid and start_ticks(row.serve_pid) == row.serve_start_ticks:
            _stop_pid(row.serve_pid)
        directory = Path(settings.INSTANT_DIR) / str(recovery_id)
        _unmount(directory / "mount")
        if os.path.ismount(directory / "mount"):
            log.warning("%s is still mounted: its folder is kept", directory / "mount")
        else:
            shutil.rmtree(directory, ignore_errors=True)
        self._unexport(recovery_id)
        InstantRecovery.objects.filter(pk=recovery_id).update(serve_pid=None, serve_start_ticks=None, export_id=None)

    def _copy_status(self, recovery: InstantRecovery) -> None:
        status = read_status(recovery)
        if status is None or status.get("pid") != recovery.serve_pid:
            return
        free = _free_bytes(recovery.overlay_dir)
        fields: dict[str, Any] = {
            "bytes_read": int(status.get("bytes_read", 0)),
            "overlay_bytes": int(status.get("overlay_bytes", 0)),
            "overlay_free_bytes": free,
            "write_error": _write_error(status, free, recovery.overlay_dir),
        }
        if any(getattr(recovery, name) != value for name, value in fields.items()):
            if fields["write_error"] and not recovery.write_error:
                log.error("instant recovery %s: %s", recovery.pk, fields["write_error"])
            InstantRecovery.objects.filter(pk=recovery.pk).update(**fields)

    def shutdown(self) -> None:
        """Stop every server (they unmount) and ganesha: what `make run` does on its way out."""
        for recovery_id in list(self.children):
            _stop(self.children.pop(recovery_id))
            # A server that was killed could not unmount: its dead mount must not outlive us.
            _unmount(Path(settings.INSTANT_DIR) / str(recovery_id) / "mount")
            # Stopped on purpose: the next supervisor starts it again without counting a restart.
            InstantRecovery.objects.filter(pk=recovery_id).update(serve_pid=None, serve_start_ticks=None)
        if self.ganesha is not None:
            self.ganesha.stop()
            self.ganesha = None


def _stop(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _stop_pid(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while start_ticks(pid) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        if start_ticks(pid) is not None:
            os.kill(pid, signal.SIGKILL)


def _unmount(mount: Path) -> None:
    """Unmount a live mount or the dead one of a killed server (os.path.ismount misses that one: its
    stat fails with ENOTCONN)."""
    with contextlib.suppress(OSError):
        clear_stale_mount(mount)
    unmount(mount)


# Below this, the overlay's file system counts as full: the guest's next writes may fail.
FULL_BELOW = 1 << 20


def _free_bytes(directory: Path) -> int | None:
    try:
        st = os.statvfs(directory)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def _write_error(status: dict[str, Any], free: int | None, overlay: Path) -> str:
    """Why the VM's writes fail now: the server's last write error while writes fail, or a full file
    system (when it is full, the server cannot rewrite status.json to say so)."""
    advice = f"free space on the file system of {overlay}, or migrate or stop the VM"
    if status.get("write_failing"):
        reason = status.get("last_write_error") or "no reason given"
        return f"The VM's writes fail ({reason}): {advice}."[:500]
    if free is not None and free < FULL_BELOW:
        return f"The overlay's file system is full, so the VM's writes fail: {advice}."[:500]
    return ""


def _record_restart(recovery_ids: list[int], reason: str) -> None:
    InstantRecovery.objects.filter(pk__in=recovery_ids).update(
        restarts=F("restarts") + 1, last_restart=timezone.now(), restart_reason=reason[:500]
    )


def _last_line(path: Path) -> str:
    with contextlib.suppress(OSError):
        lines = path.read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else ""
    return ""


_default: Supervisor | None = None


def default() -> Supervisor:
    global _default
    if _default is None:
        _default = Supervisor()
    return _default


def reconcile() -> None:
    """One pass of this process's supervisor (the command runs it every 2 s)."""
    default().reconcile()
