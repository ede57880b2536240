"""Writing into an NFS export in place, without a kernel mount: libnfs (Debian libnfs13, pulled in by
libnfs-utils) through ctypes. libnfs-utils has nfs-cat and nfs-ls to read, but its nfs-cp only
creates new files (O_EXCL), and a served disk's extent exists already; this is the same client
library those tools use, called for pwrite and fsync (libnfs 5.0 signatures: offset before count)."""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator
from contextlib import contextmanager


class _NfsUrl(ctypes.Structure):
    _fields_ = [("server", ctypes.c_char_p), ("path", ctypes.c_char_p), ("file", ctypes.c_char_p)]


def _library() -> ctypes.CDLL:
    lib = ctypes.CDLL("libnfs.so.13")
    lib.nfs_init_context.restype = ctypes.c_void_p
    lib.nfs_get_error.restype = ctypes.c_char_p
    lib.nfs_get_error.argtypes = [ctypes.c_void_p]
    lib.nfs_destroy_context.argtypes = [ctypes.c_void_p]
    lib.nfs_parse_url_full.restype = ctypes.POINTER(_NfsUrl)
    lib.nfs_parse_url_full.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.nfs_destroy_url.argtypes = [ctypes.POINTER(_NfsUrl)]
    lib.nfs_mount.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
    lib.nfs_open.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_void_p)]
    lib.nfs_pwrite.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_char_p]
    lib.nfs_pread.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_char_p]
    lib.nfs_fsync.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.nfs_close.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    return lib


class NfsFile:
    def __init__(self, lib: ctypes.CDLL, context: int, handle: int) -> None:
        self.lib, self.context, self.handle = lib, context, handle

    def _check(self, result: int, what: str) -> int:
        if result < 0:
            raise OSError(-result, f"{what}: {self.lib.nfs_get_error(self.context).decode()}")
        return result

    def pwrite(self, data: bytes, offset: int) -> int:
        # libnfs 5.0.2 encodes an NFSv4 WRITE's data into a fixed-size buffer and fails ("Failed to
        # encode COMPOUND4args") from about 4,000 bytes on (measured here), so write in 2 KiB pieces.
        done = 0
        while done < len(data):
            piece = data[done : done + 2048]
            done += self._check(
                self.lib.nfs_pwrite(self.context, self.handle, offset + done, len(piece), piece), "nfs_pwrite"
            )
        return done

    def pread(self, size: int, offset: int) -> bytes:
        buffer = ctypes.create_string_buffer(size)
        n = self._check(self.lib.nfs_pread(self.context, self.handle, offset, size, buffer), "nfs_pread")
        return buffer.raw[:n]

    def fsync(self) -> None:
        self._check(self.lib.nfs_fsync(self.context, self.handle), "nfs_fsync")


@contextmanager
def nfs_open(url: str, flags: int = os.O_RDWR) -> Iterator[NfsFile]:
    """An open file of an NFS export, by libnfs URL (nfs://host/export/file?version=4&nfsport=N)."""
    lib = _library()
    context = lib.nfs_init_context()
    url_parts = lib.nfs_parse_url_full(context, url.encode())
    if not url_parts:
        raise OSError(f"bad NFS URL {url}: {lib.nfs_get_error(context).decode()}")
    handle = ctypes.c_void_p()
    try:
        parts = url_parts.contents
        if lib.nfs_mount(context, parts.server, parts.path) != 0:
            raise OSError(f"nfs_mount {url}: {lib.nfs_get_error(context).decode()}")
        if lib.nfs_open(context, parts.file, flags, ctypes.byref(handle)) != 0:
            raise OSError(f"nfs_open {url}: {lib.nfs_get_error(context).decode()}")
        yield NfsFile(lib, context, handle.value or 0)
    finally:
        if handle.value:
            lib.nfs_close(context, handle)
        lib.nfs_destroy_url(url_parts)
        lib.nfs_destroy_context(context)
