"""The errors recovery.filesystems raises on purpose, and how dissect's own errors become them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class FileSystemError(Exception):
    """Base class of the errors this package raises on purpose."""

    path: str = ""  # the subfolder FileSystem.walk could not list, when it hands the error to onerror


class NotFound(FileSystemError, FileNotFoundError):
    """No file or folder at that path (or no volume with that index)."""


class NotADirectory(FileSystemError, NotADirectoryError):
    """A folder was expected but the path names a file or a symbolic link."""


class NotAFile(FileSystemError):
    """open() was given a folder, a symbolic link or a device/fifo/socket node."""


class NotBrowsable(FileSystemError):
    """The volume holds no file system this package can read; the message is its `reason`."""


class DamagedFileSystem(FileSystemError):
    """dissect failed while reading a structure of an opened volume (a damaged or unusual one)."""


@contextmanager
def dissect_errors(path: str) -> Iterator[None]:
    """Turn whatever dissect raises on a damaged structure into DamagedFileSystem; ours pass unchanged."""
    try:
        yield
    except FileSystemError:
        raise
    except Exception as exc:
        raise DamagedFileSystem(f"cannot read {path!r}: {short_error(exc)}") from exc


def short_error(exc: BaseException) -> str:
    """The error's first line, at most 120 characters: it ends up in a reason sentence people read."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    # dissect may quote a raw file name: keep the sentence printable text whatever it held.
    text = "".join(char if char.isprintable() else " " for char in text)
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) > 120:
        text = text[:117] + "..."
    return text
