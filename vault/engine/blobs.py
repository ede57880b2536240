"""The vault's storage back ends: one small interface over a flat namespace of immutable blobs.

Names are '/'-separated paths such as `chunks/ab12/ab12...` or `points/<id>/manifest`. A blob is
written once and never modified in place (put-if-absent, or an explicit overwrite for the small
metadata blobs), which is all a deduplicating vault needs and what every object store does well.

Two implementations: `DirectoryBackend` (a local or mounted directory: the embedded default and the
tests' reference) and `AzureBlobBackend` in `azure_blob.py` (Azure Blob Storage; Azurite in tests).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import os
import re
import secrets
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from .fsutil import fsync_dir, write_all

# Access tiers, named as Azure names them. A back end without tiers reports every blob as HOT.
HOT = "Hot"
COOL = "Cool"
COLD = "Cold"
ARCHIVE = "Archive"
TIERS = (HOT, COOL, COLD, ARCHIVE)


class BackendError(Exception):
    """A back end failed (network, permission, service error); the message says which and where."""


class BlobNotFound(BackendError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class BlobArchived(BackendError):
    """The blob is in the Archive tier: it must be rehydrated (hours on Azure) before it can be read."""

    def __init__(self, message: str, name: str, rehydrating: bool = False) -> None:
        super().__init__(message)
        self.name = name
        self.rehydrating = rehydrating


@dataclass(frozen=True)
class BlobInfo:
    name: str
    size: int
    modified: dt.datetime  # timezone-aware UTC
    tier: str = HOT
    # True while an Archive blob is being moved back to an online tier.
    rehydrating: bool = False
    tags: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class Backend(Protocol):
    """What the vault needs from a storage service. Implementations are thread-safe: replication
    uploads from a pool of threads through one back end object."""

    #: Shown to people: "directory /srv/vault", "Azure Blob account/container".
    description: str
    #: Whether set_tier() does anything (a directory has no tiers).
    supports_tiers: bool

    def put(self, name: str, data: bytes | memoryview, *, overwrite: bool = False) -> bool:
        """Store `data` under `name` atomically (readers never see part of it). Returns False, writing
        nothing, when the blob exists and `overwrite` is False. The service checks the bytes it got
        (Content-MD5 on Azure), so a blob that exists is whole."""
        ...

    def get(self, name: str) -> bytes:
        """The whole blob; BlobNotFound, or BlobArchived for an archived blob."""
        ...

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        """`length` bytes from `offset` (fewer only at the end of the blob)."""
        ...

    def exists(self, name: str) -> bool: ...

    def info(self, name: str) -> BlobInfo:
        """Size, modification time, tier and tags of one blob; BlobNotFound if absent."""
        ...

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        """Every blob whose name starts with `prefix`, in name order, paged lazily."""
        ...

    def delete(self, name: str) -> bool:
        """Remove a blob; False if it was not there."""
        ...

    def set_tier(self, name: str, tier: str, *, rehydrate_priority: str = "Standard") -> None:
        """Move a blob to another access tier. From Archive to an online tier this starts a
        rehydration that Azure completes within hours (Azurite at once)."""
        ...

    def set_tags(self, name: str, tags: dict[str, str]) -> None:
        """Replace the blob's index tags (Azure blob index tags: at most 10, short values)."""
        ...

    def set_immutable_until(self, name: str, until: dt.datetime) -> bool:
        """Ask the service to refuse deleting or overwriting the blob before `until`. Returns False
        when the service or account does not support it (a directory, Azurite, an account without
        version-level immutability); the vault's own retention lock still applies."""
        ...


# Blob names are checked the same way by every back end, so code tested against a directory behaves
# the same on Azure: '/'-separated segments, none empty, none starting with '.' (dot names belong to
# the back end: a directory's temporary files and tags), no backslash or control character, no
# trailing '.', at most Azure's 1024 characters.
MAX_NAME_LENGTH = 1024
_BAD_CHARACTER = re.compile(r"[\x00-\x1f\x7f\\]")
# Azure blob index tags: at most 10; keys 1-128 and values 0-256 of these characters.
MAX_TAGS = 10
_TAG_KEY = re.compile(r"[A-Za-z0-9 +\-./:=_]{1,128}")
_TAG_VALUE = re.compile(r"[A-Za-z0-9 +\-./:=_]{0,256}")
REHYDRATE_PRIORITIES = ("Standard", "High")


def check_blob_name(name: str) -> str:
    """`name` if it is a valid blob name; ValueError saying why otherwise."""

    def invalid(why: str) -> ValueError:
        return ValueError(f"invalid blob name {name!r}: {why}")

    if not isinstance(name, str) or not name:
        raise invalid("it is empty")
    if len(name) > MAX_NAME_LENGTH:
        raise invalid(f"longer than {MAX_NAME_LENGTH} characters")
    if _BAD_CHARACTER.search(name):
        raise invalid("it contains a backslash or a control character")
    if name.startswith("/"):
        raise invalid("it is absolute")
    if name.endswith("."):
        raise invalid("it ends with '.'")
    for part in name.split("/"):
        if not part:
            raise invalid("it has an empty segment")
        if part.startswith("."):
            raise invalid("a segment is '.', '..' or starts with '.'")
    return name


def check_tags(tags: dict[str, str]) -> dict[str, str]:
    """A copy of `tags` if Azure would accept them as blob index tags; ValueError otherwise."""
    if len(tags) > MAX_TAGS:
        raise ValueError(f"at most {MAX_TAGS} tags, not {len(tags)}")
    for key, value in tags.items():
        if not isinstance(key, str) or not _TAG_KEY.fullmatch(key):
            raise ValueError(f"invalid tag name {key!r}: 1-128 letters, digits, spaces or + - . / : = _")
        if not isinstance(value, str) or not _TAG_VALUE.fullmatch(value):
            raise ValueError(f"invalid value of tag {key!r}: up to 256 letters, digits, spaces or + - . / : = _")
    return dict(tags)


def check_tier(tier: str, rehydrate_priority: str = "Standard") -> None:
    if tier not in TIERS:
        raise ValueError(f"unknown access tier {tier!r}: use one of {', '.join(TIERS)}")
    if rehydrate_priority not in REHYDRATE_PRIORITIES:
        raise ValueError(f"unknown rehydrate priority {rehydrate_priority!r}: use Standard or High")


def check_range(offset: int, length: int) -> None:
    if offset < 0 or length < 0:
        raise ValueError(f"invalid range: offset {offset}, length {length}")


def check_until(until: dt.datetime) -> None:
    if until.tzinfo is None or until.utcoffset() is None:
        raise ValueError("the immutability date must be timezone-aware")


class DirectoryBackend:
    """Blobs as files under a directory (local or mounted): blob `a/b/c` is the file `root/a/b/c`.

    A put writes a temporary file (`.tmp-*`) beside the target, fsyncs it, then links it into place
    (put-if-absent: the link fails if the name exists) or renames it over the target (overwrite),
    and fsyncs the directory; readers see the whole blob or none. Tags live in sidecar JSON files
    under `root/.tags/`. Thread-safe, and safe for several processes sharing the directory (as far
    as the file system's link and rename are atomic). The root must exist: it is never created.
    """

    supports_tiers = False
    _TAGS_DIR = ".tags"
    _TMP_PREFIX = ".tmp-"

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.description = f"directory {self.root}"
        # Serialises, within this process, a blob's creation or deletion with changes to its tags,
        # so a put never wipes the tags another thread just set on the blob it created.
        self._lock = threading.Lock()

    # -- helpers

    def _path(self, name: str) -> Path:
        return self.root / check_blob_name(name)

    def _tags_path(self, name: str) -> Path:
        return self.root / self._TAGS_DIR / f"{name}.json"

    def _error(self, err: OSError, action: str, name: str) -> BackendError:
        reason = err.strerror or str(err)
        return BackendError(f"{self.description}: {action} {name!r}: {reason}")

    def _not_found(self, name: str) -> BlobNotFound:
        return BlobNotFound(f"{self.description}: no blob {name!r}")

    def _conflict(self, name: str) -> BackendError:
        return BackendError(
            f"{self.description}: cannot store {name!r}: a blob and a folder of blobs would share a name"
        )

    def _make_parents(self, directory: Path, name: str) -> None:
        """Create `directory` and its missing parents below the root, fsyncing each new entry."""
        missing: list[Path] = []
        current = directory
        while not current.is_dir():
            if current == self.root:
                # Never created here: a share that is not mounted must not fill the mount point.
                raise BackendError(f"{self.description}: the directory does not exist (mount or create it)")
            missing.append(current)
            current = current.parent
        for path in reversed(missing):
            try:
                path.mkdir()
            except FileExistsError:
                if not path.is_dir():
                    raise self._conflict(name) from None
                continue  # another writer made it
            except NotADirectoryError:
                raise self._conflict(name) from None
            fsync_dir(path.parent)

    def _write_temp(self, directory: Path, data: bytes | memoryview) -> Path:
        temp = directory / f"{self._TMP_PREFIX}{secrets.token_hex(8)}"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            write_all(fd, [data])
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            temp.unlink(missing_ok=True)
            raise
        os.close(fd)
        return temp

    def _read_tags(self, name: str) -> dict[str, str]:
        try:
            tags = json.loads(self._tags_path(name).read_bytes())
            if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
                raise ValueError("not an object of strings")
            return tags
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as err:
            raise BackendError(f"{self.description}: cannot read the tags of {name!r}: {err}") from err

    def _drop_tags(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            self._tags_path(name).unlink()

    @staticmethod
    def _info(name: str, st: os.stat_result, tags: dict[str, str]) -> BlobInfo:
        modified = dt.datetime.fromtimestamp(st.st_mtime, dt.UTC)
        return BlobInfo(name=name, size=st.st_size, modified=modified, tags=tags)

    # -- the Backend interface

    def put(self, name: str, data: bytes | memoryview, *, overwrite: bool = False) -> bool:
        path = self._path(name)
        if not overwrite and os.path.lexists(path):
            if path.is_dir():
                raise self._conflict(name)
            return False  # the common case for deduplicated chunks: no write at all
        try:
            self._make_parents(path.parent, name)
            temp = self._write_temp(path.parent, data)
            try:
                with self._lock:
                    if not self._publish(temp, path, name, overwrite):
                        return False
                    self._drop_tags(name)  # a new blob starts without tags, as on Azure
            finally:
                temp.unlink(missing_ok=True)
            fsync_dir(path.parent)
        except IsADirectoryError:
            raise self._conflict(name) from None
        except OSError as err:
            raise self._error(err, "writing", name) from err
        return True

    def _publish(self, temp: Path, path: Path, name: str, overwrite: bool) -> bool:
        if overwrite:
            os.replace(temp, path)
            return True
        try:
            os.link(temp, path)
        except FileExistsError:
            if path.is_dir():
                raise self._conflict(name) from None
            return False
        except OSError as err:
            if err.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS):
                raise
            # A file system without hard links (some SMB or FUSE mounts): check, then rename. Atomic
            # for this process (the lock is held); two processes could both write, which for the
            # vault's content-addressed chunks means the same bytes twice.
            if os.path.lexists(path):
                return False
            os.replace(temp, path)
        return True

    def get(self, name: str) -> bytes:
        path = self._path(name)
        try:
            return path.read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise self._not_found(name) from None
        except OSError as err:
            raise self._error(err, "reading", name) from err

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        check_range(offset, length)
        path = self._path(name)
        try:
            with open(path, "rb") as file:
                file.seek(offset)
                return file.read(length)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise self._not_found(name) from None
        except OSError as err:
            raise self._error(err, "reading", name) from err

    def exists(self, name: str) -> bool:
        path = self._path(name)
        try:
            return path.is_file()
        except OSError as err:  # a permission problem, not an absent blob
            raise self._error(err, "reading", name) from err

    def info(self, name: str) -> BlobInfo:
        path = self._path(name)
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise self._not_found(name) from None
        except OSError as err:
            raise self._error(err, "reading", name) from err
        if not stat.S_ISREG(st.st_mode):
            raise self._not_found(name)
        return self._info(name, st, self._read_tags(name))

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        # A depth-first walk that visits each directory's entries sorted by their full name, a
        # sub-directory `d` sorting as "d/" (all its blobs start with that), yields blobs in the
        # order of their names, which is Azure's order (code points, as UTF-8 bytes sort).
        try:
            yield from self._walk("", prefix)
        except OSError as err:
            raise self._error(err, "listing", prefix) from err

    def _walk(self, relative: str, prefix: str) -> Iterator[BlobInfo]:
        directory = self.root / relative if relative else self.root
        try:
            with os.scandir(directory) as scan:
                entries = [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in scan]
        except (FileNotFoundError, NotADirectoryError):
            return  # the root is missing (nothing stored yet), or the directory went away meanwhile
        tagged = self._tagged(relative)
        keys = sorted((f"{relative}{entry}/" if is_dir else f"{relative}{entry}", is_dir) for entry, is_dir in entries)
        for key, is_dir in keys:
            if key[len(relative)] == ".":  # temporary files, the tags tree
                continue
            if is_dir:
                if key.startswith(prefix) or prefix.startswith(key):
                    yield from self._walk(key, prefix)
            elif key.startswith(prefix):
                try:
                    st = os.stat(self.root / key, follow_symlinks=False)
                except FileNotFoundError:
                    continue  # deleted meanwhile
                if stat.S_ISREG(st.st_mode):
                    tags = self._read_tags(key) if key[len(relative) :] in tagged else {}
                    yield self._info(key, st, tags)

    def _tagged(self, relative: str) -> set[str]:
        """Names (within one directory) of the blobs that have tags: one scandir instead of a failed
        open per blob."""
        try:
            with os.scandir(self.root / self._TAGS_DIR / relative) as scan:
                return {entry.name[: -len(".json")] for entry in scan if entry.name.endswith(".json")}
        except (FileNotFoundError, NotADirectoryError):
            return set()

    def delete(self, name: str) -> bool:
        path = self._path(name)
        try:
            with self._lock:
                # Tags first: a crash in between leaves a blob without tags, never tags that a later
                # blob of the same name would inherit.
                self._drop_tags(name)
                try:
                    path.unlink()
                except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                    return False
            fsync_dir(path.parent)
        except OSError as err:
            raise self._error(err, "deleting", name) from err
        return True

    def set_tier(self, name: str, tier: str, *, rehydrate_priority: str = "Standard") -> None:
        check_tier(tier, rehydrate_priority)
        if not self.exists(name):
            raise self._not_found(name)
        # A directory has no tiers: every blob stays HOT.

    def set_tags(self, name: str, tags: dict[str, str]) -> None:
        tags = check_tags(tags)
        path = self._path(name)
        tags_path = self._tags_path(name)
        try:
            with self._lock:
                if not path.is_file():
                    raise self._not_found(name)
                if not tags:
                    self._drop_tags(name)
                    return
                tags_path.parent.mkdir(parents=True, exist_ok=True)
                temp = self._write_temp(tags_path.parent, json.dumps(tags, sort_keys=True).encode())
                try:
                    os.replace(temp, tags_path)
                finally:
                    temp.unlink(missing_ok=True)
            fsync_dir(tags_path.parent)
        except OSError as err:
            raise self._error(err, "tagging", name) from err

    def set_immutable_until(self, name: str, until: dt.datetime) -> bool:
        check_until(until)
        if not self.exists(name):
            raise self._not_found(name)
        return False  # a directory cannot refuse deletion; the vault's own retention lock applies
