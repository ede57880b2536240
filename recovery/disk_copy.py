"""A point's disk written to a datastore file and read back, at the speed of the wire.

vCenter takes a datastore file in one HTTP PUT. Three things overlap here, so with a core to spare
for each the restore takes about as long as a plain PUT of the image (on fewer, the CPU that reading
back costs this process and the server bounds it; see README):

- decoding: `engine.restore_disk` decompresses and checks chunks on a thread pool, ahead of the PUT;
- sending: this thread only hands decoded chunks to the socket (`DatastoreFile.upload`);
- reading back: every chunk is read from the datastore on a thread of its own, READBACK_LAG bytes behind
  what has been sent (further when the server turns out to be further behind), and compared with the
  bytes sent for it (a memcmp: restore_disk checked those against the point's digest as it decoded
  them, so this is the digest check at a tenth of the cost of hashing again); a chunk whose sent
  bytes are no longer held is hashed and compared with its digest.

A read-back during the PUT is *tentative*: the server may not have written what it was sent yet (or
may write the file elsewhere and rename it at the end), so a chunk that reads back short or different
is not a failure then, only checked again once vCenter has answered the PUT. Every chunk is read back
at least once, and any chunk that does not match is read back once more after the PUT, whose verdict
is final. Plain Python: no Django.
"""

from __future__ import annotations

import enum
import hashlib
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from inventory import vcenter as vsphere
from vault import engine
from vault.engine.format import ZERO
from vault.engine.reader import ChunkReader

READBACK_LAG = 16 * 2**20  # what may still be in socket buffers on its way to the datastore
HELD_CHUNKS = 16  # sent chunks kept for the comparison; the upload waits while more are unchecked
PROGRESS_SECONDS = 0.5  # how often progress is reported while the last chunks are read back


@dataclass(frozen=True)
class DiskTarget:
    """Where a disk of the point is written: a flat file on a datastore."""

    source_key: int  # the point's disk
    label: str
    datacenter: str
    datastore: str
    path: str


class _Outcome(enum.Enum):
    RIGHT = "reads back as the point"
    NOT_THERE_YET = "the file is shorter (or absent) so far"
    DIFFERENT = "reads back different"


class NotExact(Exception):
    """The datastore file does not read back as the point: the message says where."""


def write_and_check(
    conn: vsphere.Connection,
    target: DiskTarget,
    source: ChunkReader,
    index: engine.DiskIndex,
    monitor: engine.Monitor,
) -> None:
    """Write the image `index` names (chunks from `source`) over the datastore file `target`, and read
    every chunk back. monitor.progress gets bytes written plus bytes checked (up to twice the image
    size), always from this thread; monitor.should_cancel stops it with engine.Cancelled.

    NotExact when the file reads back short or different; the errors of DatastoreFile (VCenterError)
    and of the store (engine.StoreError, ChunkCorrupt included) as they come.
    """
    readback = _ReadBack(conn, target, index)
    with ThreadPoolExecutor(1, thread_name_prefix="restore-readback") as runner:
        checking = runner.submit(readback.run)
        try:
            with (
                vsphere.DatastoreFile(conn, target.datacenter, target.datastore, target.path) as file,
                file.upload(index.image_size) as upload,
            ):
                sink = _Sink(upload, readback)
                progress = engine.Monitor(
                    progress=lambda written: monitor.report(written + readback.checked),
                    should_cancel=monitor.should_cancel,
                )
                engine.restore_disk(source, index, sink, monitor=progress)
        except BaseException:
            readback.abort()
            raise
        readback.upload_finished()
        _wait_reporting(checking, readback, index.image_size, monitor)


def _wait_reporting(checking: Future[None], readback: _ReadBack, size: int, monitor: engine.Monitor) -> None:
    """Wait for the last read-backs, reporting progress and asking about cancelling from this thread."""
    while not wait([checking], timeout=PROGRESS_SECONDS).done:
        monitor.report(size + readback.checked)
        if monitor.should_cancel is not None and monitor.should_cancel():
            readback.abort()
            raise engine.Cancelled("restore cancelled while reading the disk back")
    checking.result()
    monitor.report(2 * size)


class _Sink:
    """The file object restore_disk writes to: the PUT's body, telling the read-back how far it got."""

    def __init__(self, upload: vsphere.Upload, readback: _ReadBack) -> None:
        self.upload, self.readback = upload, readback

    def write(self, data: memoryview) -> int:
        self.readback.raise_if_failed()
        offset = self.upload.sent
        n = self.upload.write(data)
        self.readback.sent(offset, data, self.upload.sent)
        return n


class _ReadBack:
    """Reads chunks back as the upload passes them (see the module's docstring); run() in a thread."""

    def __init__(self, conn: vsphere.Connection, target: DiskTarget, index: engine.DiskIndex) -> None:
        self.conn, self.target, self.index = conn, target, index
        self.checked = 0  # bytes read back and found right (read by the writing thread for progress)
        self._sent = 0
        self._held: dict[int, bytes] = {}  # chunk number: the bytes sent for it, until read back
        self.lag = READBACK_LAG  # how far behind the upload chunks are read back; grows (_wait_longer)
        self._sent_at_read = self._file_size_seen = 0  # for _wait_longer
        self._finished = self._aborted = False
        self._failure: BaseException | None = None
        self._changed = threading.Condition()
        self._buffers = threading.local()

    # ---- told by the writing thread ----

    def sent(self, offset: int, data: memoryview, sent: int) -> None:
        """The upload sent `data` at `offset`, and `sent` bytes in all. A whole chunk is held for the
        comparison (restore_disk writes one chunk per call); the upload waits while HELD_CHUNKS are."""
        i, within = divmod(offset, self.index.chunk_size)
        with self._changed:
            if not within and i < len(self.index) and len(data) == self.index.extent(i)[1]:
                self._held[i] = _as_bytes(data) if self.index.digest(i) is not None else b""
            self._sent = sent
            self._changed.notify_all()
            while len(self._held) > HELD_CHUNKS and not (self._aborted or self._failure):
                self._changed.wait()

    def upload_finished(self) -> None:
        with self._changed:
            self._finished = True
            self._changed.notify_all()

    def abort(self) -> None:
        with self._changed:
            self._aborted = True
            self._changed.notify_all()

    def raise_if_failed(self) -> None:
        """Stop the upload early when reading back has already failed for good."""
        if self._failure is not None:
            raise self._failure

    # ---- the read-back thread ----

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:
            with self._changed:
                self._failure = exc
                self._changed.notify_all()  # an upload waiting for room stops
            raise

    def _run(self) -> None:
        t = self.target
        again: list[int] = []
        # One thread reads back, chunk after chunk: a second one measured no faster here and cost more
        # CPU (GIL hand-offs); reading back is well ahead of the upload's pace anyway.
        with vsphere.DatastoreFile(self.conn, t.datacenter, t.datastore, t.path, size=self.index.image_size) as file:
            for i in range(len(self.index)):
                while True:
                    tentative = self._wait_for(i)
                    if tentative is None:
                        return  # aborted
                    outcome = self._check(file, i, tentative)
                    if outcome is _Outcome.RIGHT:
                        self.checked += self.index.extent(i)[1]
                    elif not tentative:
                        self._fail(file, i)
                    elif outcome is _Outcome.NOT_THERE_YET and self._wait_longer(i):
                        continue  # the same chunk again, once the upload has gone further
                    else:
                        self._let_go(i)
                        again.append(i)
                    break
            if self._aborted:  # the upload failed after the last chunk was due: no final reading
                return
            for i in again:  # the upload is answered: these read-backs are final
                if self._check(file, i, False) is not _Outcome.RIGHT:
                    self._fail(file, i)
                self.checked += self.index.extent(i)[1]

    def _wait_for(self, i: int) -> bool | None:
        """Wait until the upload is `lag` bytes past chunk i; whether it was still going (None when
        aborted)."""
        offset, length = self.index.extent(i)
        with self._changed:
            while not (self._finished or self._aborted or self._sent >= offset + length + self.lag):
                self._changed.wait()
            if self._aborted:
                return None
            self._sent_at_read = self._sent
            return not self._finished

    def _wait_longer(self, i: int) -> bool:
        """Chunk i was not all in the file yet: the server is further behind than `lag` (its socket
        buffers can hold tens of MiB). Raise the lag to what it was behind plus a chunk, so this
        chunk and the next are read once, not once now and again after the PUT; False when the lag
        cannot grow (the upload waits for the read-back beyond that)."""
        _, length = self.index.extent(i)
        most = (HELD_CHUNKS - 1) * self.index.chunk_size
        if self.lag >= most:
            return False
        behind = self._sent_at_read - self._file_size_seen
        self.lag = min(most, max(self.lag + length, behind + length))
        return True

    def _check(self, file: vsphere.DatastoreFile, i: int, tentative: bool) -> _Outcome:
        """Whether chunk i reads back as the point has it. The bytes sent for it are let go once it
        does (or once it is final)."""
        offset, length = self.index.extent(i)
        buffer: memoryview | None = getattr(self._buffers, "buffer", None)
        if buffer is None:
            buffer = self._buffers.buffer = vsphere.read_buffer(self.index.chunk_size)
        view = buffer[:length]
        with self._changed:
            sent = self._held.get(i)
        try:
            n = file.readinto(offset, view)
        except vsphere.VCenterError:
            if not tentative:
                raise
            n = 0  # e.g. a file vCenter has not created yet: ask again later
        if n != length:
            self._file_size_seen = offset + n
            return _Outcome.NOT_THERE_YET
        digest = self.index.digest(i)
        if digest is None:
            ok = ZERO.startswith(view)
        elif sent:  # bytes.startswith(view) of equal lengths is a memcmp, without copying view
            ok = len(sent) == length and sent.startswith(view)
        else:
            ok = hashlib.sha256(view).digest() == digest
        if ok or not tentative:
            self._let_go(i)
        return _Outcome.RIGHT if ok else _Outcome.DIFFERENT

    def _let_go(self, i: int) -> None:
        """Chunk i's sent bytes are no longer needed (read back, or hashed after the PUT instead)."""
        with self._changed:
            self._held.pop(i, None)
            self._changed.notify_all()

    def _fail(self, file: vsphere.DatastoreFile, i: int) -> None:
        offset, length = self.index.extent(i)
        view = vsphere.read_buffer(length)
        if file.readinto(offset, view) != length:
            raise NotExact(f"{self.target.label} reads back shorter than the point: the restore is incomplete.")
        raise NotExact(f"{self.target.label} differs from the point at byte {offset}: the restore is not exact.")


def _as_bytes(data: memoryview) -> bytes:
    """The bytes object behind a decoded chunk (zstd's output is one), or a copy when it is a slice."""
    whole = data.obj
    if isinstance(whole, bytes) and len(whole) == len(data) and data.contiguous:
        return whole
    return data.tobytes()
