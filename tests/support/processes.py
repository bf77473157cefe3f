"""Child processes that never outlive their test.

Every child starts in its own session (start_new_session=True), so it and anything it spawns form one process
group that `stop()` can end as a whole: first the polite signal, then SIGKILL for the group after a grace period.

    with child(["streamdetect", "serve", ...], stdout=subprocess.PIPE) as proc:
        ...                                  # an assertion failing here still ends the server (and its children)
    result = run(["streamdetect", "card", path], timeout=600)   # subprocess.run, but the whole group dies on timeout
"""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import subprocess
import threading
from contextlib import asynccontextmanager, contextmanager


def kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    """Signal the process group led by `pid` (a child started with start_new_session=True); gone is fine."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, grace: float = 10) -> int:
    """Send `sig` to the child (if it still runs), wait up to `grace` s, then SIGKILL its whole group; returns the
    exit code. The group is killed in every case, so grandchildren left behind by the child die too."""
    try:
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                pass
    finally:
        kill_group(proc.pid)
        proc.wait()
    return proc.returncode


@contextmanager
def child(cmd, sig: int = signal.SIGTERM, grace: float = 10, **popen):
    """Popen(cmd) in its own session; on leaving the block (normally, on a failure or a timeout) stop() it."""
    proc = subprocess.Popen(cmd, start_new_session=True, **popen)
    try:
        yield proc
    finally:
        stop(proc, sig, grace)
        for f in (proc.stdin, proc.stdout, proc.stderr):
            if f is not None:
                f.close()


def run(cmd, timeout: float, **popen) -> subprocess.CompletedProcess:
    """subprocess.run(cmd, capture_output=True, text=True, timeout=...), except that a timeout (or any error
    while waiting) kills the child's whole process group, not only the child."""
    with child(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen) as proc:
        out, err = proc.communicate(timeout=timeout)  # TimeoutExpired propagates after the group is killed
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@asynccontextmanager
async def async_child(*cmd, sig: int = signal.SIGTERM, grace: float = 10, **kw):
    """asyncio.create_subprocess_exec(*cmd) in its own session, stopped like child() when the block is left."""
    proc = await asyncio.create_subprocess_exec(*cmd, start_new_session=True, **kw)
    try:
        yield proc
    finally:
        try:
            if proc.returncode is None:
                proc.send_signal(sig)
                try:
                    await asyncio.wait_for(proc.wait(), grace)
                except asyncio.TimeoutError:
                    pass
        except ProcessLookupError:
            pass
        finally:
            kill_group(proc.pid)
            await proc.wait()


class Pumped:
    """A child's text pipe read by a thread, so a chatty child never stalls on a full pipe and a test can wait
    for a line with a timeout (a plain readline() would wait forever on a hung child)."""

    def __init__(self, stream):
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._text: list[str] = []
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream) -> None:
        for line in stream:
            self._text.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def readline(self, timeout: float) -> str:
        """The next line ('' at the end of the stream); TimeoutError when none comes in `timeout` s."""
        try:
            return self._lines.get(timeout=timeout) or ""
        except queue.Empty:
            raise TimeoutError(f"no output line within {timeout} s") from None

    def text(self, timeout: float = 10) -> str:
        """Everything read, after waiting up to `timeout` s for the end of the stream."""
        self._thread.join(timeout)
        return "".join(self._text)
