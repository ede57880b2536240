"""Child Python processes that a test steers by the lines they print (crash and kill tests).

What this fixes, compared with `Popen(stdout=PIPE, stderr=PIPE)` and a read with a timeout:

* Both pipes are drained as the child writes, so a child can never block on a full stderr pipe
  (64 KiB) while the test waits for a line it will then never print.
* Each wait has its own deadline, for its own phase: the interpreter's start-up and imports (which on
  a loaded machine can take many seconds, and used to eat the budget meant for the work), then the
  work up to the marker.
* When a line does not come, the failure says why: the child's exit code and stderr if it died, and if
  it still runs, the stack of each of its threads (dumped on SIGUSR1), so a hang shows where.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.waiting import wait_until

REPO = Path(__file__).resolve().parents[1]
# Runs before the test's script: a SIGUSR1 prints every thread's stack to stderr, then END_OF_STACKS.
END_OF_STACKS = "-- end of stacks --"
_STACK_DUMP = f"""
import faulthandler as _faulthandler, signal as _signal, sys as _sys
def _dump_stacks(signum, frame):
    _faulthandler.dump_traceback(all_threads=True)
    print({END_OF_STACKS!r}, file=_sys.stderr, flush=True)
_signal.signal(_signal.SIGUSR1, _dump_stacks)
"""
_EOF = object()
START_UP_SECONDS = 120.0  # interpreter + imports, with the rest of the suite (or a parallel one) running


class Child:
    """`python -c script args...` with the repository on sys.path; use as a context manager, which
    kills the child (if still running) and closes its pipes."""

    def __init__(self, script: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _STACK_DUMP + script, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**(env if env is not None else os.environ), "PYTHONPATH": str(REPO)},
        )
        self.started = time.monotonic()
        self.printed: list[str] = []
        self._seen: list[str] = []  # the lines with when they came, for failure messages
        self._lines: queue.Queue[object] = queue.Queue()
        self._stderr: list[str] = []
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._seen.append(f"{line.rstrip()!r} at {time.monotonic() - self.started:.1f} s")
            self._lines.put(line.rstrip("\n"))
        self._lines.put(_EOF)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def wait_for(self, marker: str, *, timeout: float, what: str) -> None:
        """Return once the child printed the line `marker`; fail, saying why, if it does not within
        `timeout` seconds (it exited, or it hangs: then with its threads' stacks)."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
                if line is _EOF:
                    self.proc.wait(timeout=30)
                    raise AssertionError(
                        f"the child exited (code {self.proc.returncode}) before {what}, having printed "
                        f"{self._seen}; its stderr:\n{self.stderr}"
                    )
                assert isinstance(line, str)
                self.printed.append(line)
                if line == marker:
                    return
        except queue.Empty:
            raise AssertionError(
                f"the child did not print {marker!r} within {timeout:g} s ({what}); it printed {self._seen} "
                f"and is still running; its threads:\n{self._stacks()}"
            ) from None

    def _stacks(self) -> str:
        self.proc.send_signal(signal.SIGUSR1)
        try:
            wait_until(lambda: END_OF_STACKS in self.stderr, timeout=10, what="the child dumped its stacks")
        except AssertionError as err:  # its main thread is stuck in C code: say so, with what we have
            return f"({err})\n{self.stderr}"
        return self.stderr

    def kill(self) -> None:
        """SIGKILL, as a crash would; returns once the child is gone."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        assert self.proc.returncode == -signal.SIGKILL, f"the child exited by itself first: {self.stderr}"

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        for reader in self._readers:
            reader.join(timeout=10)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
