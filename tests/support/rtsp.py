"""Real RTSP on loopback for tests: a gst-rtsp-server subprocess (see rtsp_server.py) that can be restarted.

    reason = rtsp_available()          # None, or why RTSP tests must skip
    make_test_clip(tmp_path / "clip.mp4")
    with RtspServer() as srv:
        srv.publish(tmp_path / "clip.mp4", "/cam1")
        av.open(srv.url("/cam1"), options={"rtsp_transport": "tcp"}, timeout=(5, 5))
        srv.restart()                  # same port, same mounts: readers reconnect to the same URL
        srv.pause(); srv.resume()      # SIGSTOP/SIGCONT: a silent (hung) server, for read-timeout tests
"""
from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np

from tests.support import processes
from tests.support.processes import kill_group

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER_SCRIPT = Path(__file__).with_name("rtsp_server.py")
APT_PACKAGES = ("gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 python3-gi python3-gst-1.0 "
                "gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad")
_PROBE = """
import gi
gi.require_version("Gst", "1.0"); gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gst, GstRtspServer
Gst.init(None)
missing = [e for e in ("filesrc", "qtdemux", "h264parse", "appsrc", "appsink", "rtph264pay")
           if Gst.ElementFactory.find(e) is None]
print(" ".join(missing))
"""
_available: list[str | None] = []


def rtsp_available() -> str | None:
    """None when the RTSP server can run here, else a reason suitable for pytest.skip (cached)."""
    if not _available:
        _available.append(_probe())
    return _available[0]


def _probe() -> str | None:
    hint = f"apt-get install -y --no-install-recommends {APT_PACKAGES}"
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"{SYSTEM_PYTHON} not found (RTSP server needs system python3 + {hint})"
    try:
        r = processes.run([SYSTEM_PYTHON, "-c", _PROBE], timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"cannot probe GStreamer RTSP server: {e}"
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["?"])[-1]
        return f"GStreamer RTSP server unavailable to {SYSTEM_PYTHON} ({last}); {hint}"
    if r.stdout.strip():
        return f"GStreamer elements missing: {r.stdout.strip()}; {hint}"
    return None


def make_test_clip(path, seconds: float = 3, fps: int = 30, size: tuple[int, int] = (320, 240)) -> Path:
    """Write a small H.264 (yuv420p, no B-frames, keyframe every 15 frames) mp4 with a moving pattern."""
    import av  # the venv's PyAV

    w, h = size
    path = Path(path)
    yy, xx = np.mgrid[0:h, 0:w]
    with av.open(str(path), "w") as out:
        st = out.add_stream("libx264", rate=fps, options={
            "preset": "ultrafast", "tune": "zerolatency", "x264-params": "keyint=15:min-keyint=15:scenecut=0"})
        st.width, st.height, st.pix_fmt = w, h, "yuv420p"
        for i in range(int(seconds * fps)):
            img = np.empty((h, w, 3), np.uint8)
            img[..., 0] = (xx + 4 * i) % 256
            img[..., 1] = (yy + 2 * i) % 256
            img[..., 2] = 128
            x = (8 * i) % max(1, w - 40)
            img[h // 2 - 20:h // 2 + 20, x:x + 40] = 255  # white box sweeping right
            for packet in st.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in st.encode():
            out.mux(packet)
    return path


class RtspServer:
    """A restartable loopback RTSP server process. Use as a context manager, or start()/stop()."""

    def __init__(self, port: int = 0, ready_timeout: float = 15):
        self.port = port  # 0: the first start() picks a free port; restarts keep it
        self.ready_timeout = ready_timeout
        self.mounts: dict[str, Path] = {}
        self.proc: subprocess.Popen | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()

    def __enter__(self) -> RtspServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def url(self, mount: str = "/cam1") -> str:
        return f"rtsp://127.0.0.1:{self.port}{mount}"

    def start(self) -> RtspServer:
        if self.proc is not None:
            raise RuntimeError("RTSP server already running")
        reason = rtsp_available()
        if reason:
            raise RuntimeError(reason)
        cmd = [SYSTEM_PYTHON, str(SERVER_SCRIPT), "--port", str(self.port)]
        cmd += [f"--mount={m}={p}" for m, p in self.mounts.items()]
        self._lines = queue.Queue()
        # stdin stays open as a lifeline: the server exits when it closes (i.e. when this process dies). Its own
        # session makes it a process group that stop() can end as a whole.
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
                                     start_new_session=True)
        threading.Thread(target=self._pump, args=(self.proc.stdout, self._lines), daemon=True).start()
        try:
            self.port = int(self._expect("READY").split()[1])
        except BaseException:
            self.stop()
            raise
        return self

    def publish(self, mp4_path, mount: str = "/cam1") -> str:
        """Make `mount` loop the H.264 mp4 at real-time pace (like a camera); returns its URL."""
        if not mount.startswith("/") or " " in mount:
            raise ValueError(f"bad mount {mount!r}")
        path = Path(mp4_path).resolve()
        if not path.is_file():
            raise FileNotFoundError(path)
        if self.proc is not None:
            self.proc.stdin.write(f"MOUNT {mount} {path}\n")
            self.proc.stdin.flush()
            self._expect(f"MOUNTED {mount}")
        self.mounts[mount] = path  # restart() serves it again
        return self.url(mount)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        kill_group(proc.pid, signal.SIGCONT)  # in case it was paused
        processes.stop(proc, signal.SIGTERM, grace=5)  # then SIGKILL for the whole group, whatever happened
        for f in (proc.stdin, proc.stdout):
            try:
                f.close()
            except OSError:
                pass

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open but go silent, like a hung camera."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def restart(self, downtime: float = 0.0) -> None:
        """Stop, optionally stay down `downtime` seconds, and start again on the same port with the same mounts."""
        self.stop()
        time.sleep(downtime)
        self.start()

    @staticmethod
    def _pump(stream, lines: queue.Queue) -> None:
        for line in stream:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    def _expect(self, prefix: str) -> str:
        deadline = time.monotonic() + self.ready_timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"RTSP server did not say {prefix!r} within {self.ready_timeout}s") from None
            if line is None:
                code = self.proc.poll() if self.proc else None
                raise RuntimeError(f"RTSP server exited (code {code}) before {prefix!r}; see stderr above")
            if line.startswith(prefix):
                return line
            if line.startswith("ERROR"):
                raise RuntimeError(f"RTSP server: {line}")
