"""Quieting third-party log noise on stderr while keeping real errors visible.

MediaPipe's bundled LiteRT/absl code writes straight to file descriptor 2 from C++, and no environment variable
reaches it (GLOG_minloglevel, TF_CPP_MIN_LOG_LEVEL and ABSL_MIN_LOG_LEVEL were tried: no effect with mediapipe
1.x). It prints at known moments: creating a detector (LiteRT environment set-up, one "Sparsity tensors" warning
per tensor), the first detection of the process (absl's "Logging before InitGoogle()" banner and an "Input tensor
memory is not aligned" warning) and closing one ("DestroyAccelerator"). `native_stderr_filtered()` wraps those
calls: fd 2 is pointed at a temporary file, and afterwards every line that is not INFO/WARNING-level native
chatter is written to the real stderr, so errors (and anything Python threads printed meanwhile) still show.
The alignment warning is printed once per process, but only when a LiteRT input buffer first happens to be
misaligned, which is usually the detector's warm-up call and sometimes a later frame: detections are filtered
with `native_stderr_filtered_until_seen()` until it has gone by (for at most MAX_PENDING_CALLS calls).

Importing mediapipe's vision package imports matplotlib.pyplot, whose font manager logs "generated new
fontManager" at INFO whenever it (re)builds its cache: `quiet_matplotlib()` lowers that logger and, where
matplotlib's default cache folder cannot be written (so it would build a new throwaway cache every run), points
MPLCONFIGDIR at a persistent folder in the temp directory.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import re
import sys
import tempfile
import threading
from pathlib import Path

# LiteRT/TFLite: "INFO: [environment.cc:36] …", "WARNING: [model_load.cc:402] …", "INFO: Created TensorFlow Lite
# XNNPACK delegate…", absl's "WARNING: Logging before InitGoogle()…"; absl: "I0000 00:00:… file.cc:1] …", "W0000 …".
# ERROR/E/F lines stay.
NOISE = re.compile(rb"^(?:(?:INFO|VERBOSE|DEBUG|WARNING): |[IW]\d{4} )")

# onnxruntime's SessionOptions.log_severity_level for the face models: errors only (its warnings, e.g. about
# unused initializers in converted graphs, say nothing a user can act on).
ORT_SEVERITY = 3

# Once-per-process native warnings that come at a moment no caller controls (see the module doc).
ONCE_PER_PROCESS = (b"Input tensor memory is not aligned",)
MAX_PENDING_CALLS = 2000
_seen: set[bytes] = set()
_pending_calls = itertools.count()

_lock = threading.Lock()
_depth = 0
_saved: int | None = None  # the real fd 2 while redirected
_capture = None  # the temporary file fd 2 points at


@contextlib.contextmanager
def native_stderr_filtered():
    """Drop native INFO/WARNING log lines written to fd 2 inside the block; pass everything else on afterwards.
    Nests and may be entered from several threads: fd 2 is restored when the last one leaves."""
    global _depth, _saved, _capture
    with _lock:
        if _depth == 0:
            capture = saved = None
            try:
                sys.stderr.flush()
                capture = tempfile.TemporaryFile()
                saved = os.dup(2)
                os.dup2(capture.fileno(), 2)
            except (OSError, ValueError, AttributeError):  # no fd 2, no temp space: leave stderr as it is
                if saved is not None:
                    os.close(saved)
                    saved = None
                if capture is not None:
                    capture.close()
            _saved, _capture = saved, capture
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _saved is not None:
                _restore()


@contextlib.contextmanager
def native_stderr_filtered_until_seen():
    """`native_stderr_filtered()` while a once-per-process warning has not been seen yet; a no-op afterwards."""
    if len(_seen) < len(ONCE_PER_PROCESS) and next(_pending_calls) < MAX_PENDING_CALLS:
        with native_stderr_filtered():
            yield
    else:
        yield


def _restore() -> None:
    global _saved, _capture
    with contextlib.suppress(OSError, ValueError, AttributeError):
        sys.stderr.flush()  # text Python buffered meanwhile goes into the capture, and is replayed in order
    os.dup2(_saved, 2)
    os.close(_saved)
    capture, _saved, _capture = _capture, None, None
    capture.seek(0)
    lines = capture.read().splitlines(keepends=True)
    capture.close()
    _seen.update(marker for marker in ONCE_PER_PROCESS for line in lines if marker in line)
    kept = [line for line in lines if not NOISE.match(line)]
    if kept:
        with contextlib.suppress(OSError):
            os.write(2, b"".join(kept))


def quiet_matplotlib() -> None:
    """Call before anything imports matplotlib (mediapipe's vision package does)."""
    logging.getLogger("matplotlib.font_manager").setLevel(logging.WARNING)
    if "MPLCONFIGDIR" in os.environ or "matplotlib" in sys.modules:
        return
    with contextlib.suppress(RuntimeError):  # no home folder
        if _writable(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "matplotlib"):
            return
    fallback = Path(tempfile.gettempdir()) / f"streamdetect-matplotlib-{os.getuid() if hasattr(os, 'getuid') else 0}"
    if _writable(fallback):
        os.environ["MPLCONFIGDIR"] = str(fallback)


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK | os.X_OK)
