"""`streamdetect serve` stops gracefully on SIGINT and SIGTERM, even when started with SIGINT ignored (issue 10).

A background job of a non-interactive shell (`streamdetect serve &`) and some supervisors start the process with
SIGINT set to SIG_IGN; Python then never raises KeyboardInterrupt. Each test starts the real command that way, in
its own session, waits for the banner on stdout, signals it and checks the exit; the group is killed in any case.
"""

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

READY_S = 240  # model load on a busy 2-core machine
STOP_S = 60


def serve_command() -> list[str]:
    exe = shutil.which("streamdetect")
    return [exe, "serve", "--port", "0"] if exe else [sys.executable, "-m", "streamdetect.cli", "serve", "--port", "0"]


def _ignore_sigint():
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class Served:
    """The service as a subprocess: stdout lines arrive on a queue (so waits have deadlines), stderr to a file."""

    def __init__(self, tmp_path):
        self.err_path = tmp_path / "serve.stderr"
        self._err = open(self.err_path, "w")
        self.proc = subprocess.Popen(serve_command(), stdout=subprocess.PIPE, stderr=self._err, text=True,
                                     stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_ignore_sigint,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def banner(self) -> list[str]:
        """stdout up to the banner's last line ("… stops"), waiting for readiness rather than sleeping."""
        got, deadline = [], time.monotonic() + READY_S
        while not (got and "stops" in got[-1]):
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no banner within {READY_S} s: {got} {self.stderr()[-2000:]}")
            if line is None:
                pytest.fail(f"serve exited with {self.proc.wait()} before it was ready: {self.stderr()[-2000:]}")
            got.append(line.rstrip("\n"))
        return got

    def stop_with(self, *signums) -> int:
        for signum in signums:
            os.kill(self.proc.pid, signum)
        return self.proc.wait(STOP_S)

    def stderr(self) -> str:
        self._err.flush()
        return self.err_path.read_text(errors="replace")

    def kill(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(30)
        self._err.close()
        self.proc.stdout.close()


@pytest.fixture
def served(tmp_path):
    s = Served(tmp_path)
    try:
        yield s
    finally:
        s.kill()


def test_the_child_really_starts_with_sigint_ignored():
    """The premise of the other tests: what the child inherits (as a `cmd &` job would)."""
    probe = "import signal; print(signal.getsignal(signal.SIGINT) == signal.SIG_IGN)"
    out = subprocess.run([sys.executable, "-c", probe], preexec_fn=_ignore_sigint, capture_output=True, text=True,
                         timeout=60)
    assert out.stdout.strip() == "True", out


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_serve_gracefully(served, signum):
    banner = served.banner()
    start = time.monotonic()
    assert served.stop_with(signum) == 0, served.stderr()[-3000:]
    err = served.stderr()
    assert time.monotonic() - start < STOP_S
    assert f"stopping ({signal.Signals(signum).name})" in err
    assert "Traceback" not in err, err[-3000:]
    assert banner[0].startswith("streamdetect serving sample")


def test_second_signal_while_stopping_exits_at_once(served):
    served.banner()
    code = served.stop_with(signal.SIGTERM, signal.SIGINT)  # the second arrives while the first is being handled
    err = served.stderr()
    assert code == 128 + signal.SIGINT, err[-3000:]
    assert "stopping (SIGTERM)" in err and "SIGINT again: exiting now" in err


def test_banner_lists_the_dashboard_first(served):
    banner = served.banner()
    port = re.search(r"dashboard at http://127\.0\.0\.1:(\d+)/$", banner[0])
    assert port, banner
    base = f"127.0.0.1:{port.group(1)}"
    expected = [f"ws://{base}/ws", f"http://{base}/healthz", f"http://{base}/metrics", f"http://{base}/api/events"]
    positions = [next(i for i, line in enumerate(banner) if url in line) for url in expected]
    assert positions == sorted(positions) and positions[0] == 1, banner
    assert served.stop_with(signal.SIGTERM) == 0
