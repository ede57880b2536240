"""The checks of a restore test that read the point itself (no vCenter): its volumes open and list,
and the canary file is there. Each returns a Check: ok, a sentence, and what the next test compares."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from recovery import browse
from recovery import filesystems as fs

# File systems the product can open: one of these that does not open or list is damaged. Anything else
# (BitLocker, swap, an unknown partition) is only noted: the test cannot judge it.
KNOWN = ("ntfs", "ext", "fat", "xfs")


@dataclass
class Check:
    ok: bool
    detail: str
    volumes: list[dict[str, Any]] = field(default_factory=list)


def volume_name(disk: str, volume: fs.Volume) -> str:
    label = f" ({volume.label})" if volume.label else ""
    return f"{disk}, volume {volume.index} [{volume.fs_type or volume.partition_type}]{label}"


def _damage(layout: fs.DiskLayout, volume: fs.Volume) -> str:
    """Why a volume the product can read is damaged ("damaged NTFS: ..."), "" when it opens and its root
    lists (or when it is
    nothing the product reads: BitLocker, swap, an unknown partition)."""
    if not volume.browsable:
        # Recognised by its signature but failing to open: recovery.filesystems says "damaged NTFS: ...".
        return volume.reason if volume.reason.startswith("damaged ") else ""
    if not (volume.fs_type or "").startswith(KNOWN):
        return ""
    try:
        layout.filesystem(volume.index).list_page("/", 0, 100)
    except (fs.FileSystemError, OSError, ValueError) as exc:
        return f"damaged {volume.fs_type}: its root folder does not list: {exc}"
    return ""


def check_volumes(views: list[browse.DiskView], before: list[dict[str, Any]] | None) -> Check:
    """Every disk's volumes (browse.disk_views of the point) open and their root folders list. A
    damaged volume fails the check unless it was damaged already in the previously tested point
    (`before`: that test's volumes)."""
    damaged_before = {(v["disk"], v["index"]) for v in before or [] if not v["ok"]}
    results: list[dict[str, Any]] = []
    failures: list[str] = []
    for view in views:
        disk = view.disk.label or f"disk {view.disk.key}"
        if view.layout is None:
            failures.append(f"{disk} cannot be read: {view.error}")
            continue
        for volume in view.layout.volumes:
            why = _damage(view.layout, volume)
            name = volume_name(disk, volume)
            results.append({"disk": view.disk.key, "index": volume.index, "name": name, "ok": not why, "why": why})
            if why and (view.disk.key, volume.index) not in damaged_before:
                failures.append(f"{name} is {why}")
    if failures:
        return Check(False, "; ".join(failures), results)
    readable = sum(1 for r in results if r["ok"])
    noted = [f"{r['name']} was damaged already in the point tested before" for r in results if not r["ok"]]
    return Check(True, "; ".join([f"{readable} volume(s) open and list", *noted]), results)


def check_canary(views: list[browse.DiskView], path: str, min_bytes: int) -> Check:
    """The file the administrator named is in the point (on any volume), at least min_bytes big."""
    for view in views:
        if view.layout is None:
            continue
        for volume in view.layout.volumes:
            if not volume.browsable:
                continue
            try:
                entry = view.layout.filesystem(volume.index).stat(path)
            except (fs.FileSystemError, OSError, ValueError):
                continue
            where = volume_name(view.disk.label or f"disk {view.disk.key}", volume)
            if entry.is_dir:
                return Check(False, f"{path} on {where} is a folder, not a file")
            if entry.size < min_bytes:
                return Check(False, f"{path} on {where} holds {entry.size} bytes, fewer than {min_bytes}")
            return Check(True, f"{path} on {where}: {entry.size} bytes")
    return Check(False, f"{path} is on no volume of the point")
