"""CLI polish: suggestions for mistyped flags and commands, the scan progress bar, quiet native logs, label sizes."""

import os
import re
import shutil
import subprocess
import sys
import threading
from types import SimpleNamespace

import numpy as np
import pytest

from streamdetect.annotate import VERDICT_COLOURS, draw_faces
from streamdetect.cli import _video_frames, main
from streamdetect.service import sample_clip

# What MediaPipe/LiteRT and matplotlib printed on every scan before streamdetect.logs.
NOISE = ("Logging before InitGoogle", "inference_runner_litert", "not aligned", "DestroyAccelerator", "Sparsity",
         "XNNPACK", "fontManager", "accelerator_registry")


def scan_command(*args) -> list[str]:
    exe = shutil.which("streamdetect")
    return [exe, "scan", *args] if exe else [sys.executable, "-m", "streamdetect.cli", "scan", *args]


def run_main(capsys, *argv):
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    return exc.value.code, capsys.readouterr().err


# -- mistyped flags and commands --------------------------------------------------------------------------------

def test_unknown_flag_gets_the_subcommand_usage_and_a_suggestion(capsys):
    code, err = run_main(capsys, "scan", "x.mp4", "--anotate", "out.mp4")
    assert code == 2
    assert "streamdetect scan: error: unrecognized argument --anotate; did you mean --annotate?" in err
    assert err.startswith("usage: streamdetect scan ")


def test_unknown_flag_with_value_and_on_serve(capsys):
    code, err = run_main(capsys, "serve", "--prot=0")
    assert code == 2 and "streamdetect serve: error: unrecognized argument --prot=0; did you mean --port?" in err
    assert err.startswith("usage: streamdetect serve ")


def test_stray_argument_without_a_suggestion(capsys):
    code, err = run_main(capsys, "scan", "x.mp4", "y.mp4")
    assert code == 2 and "streamdetect scan: error: unrecognized argument y.mp4\n" in err


def test_mistyped_command_gets_a_suggestion(capsys):
    code, err = run_main(capsys, "scna", "x.mp4")
    assert code == 2 and "streamdetect: error: unknown command 'scna'; did you mean 'scan'?" in err
    assert err.startswith("usage: streamdetect ")
    code, err = run_main(capsys, "-v", "serv")
    assert code == 2 and "did you mean 'serve'?" in err


def test_unrelated_command_keeps_argparse_message(capsys):
    code, err = run_main(capsys, "zzzzqqq")
    assert code == 2 and "invalid choice: 'zzzzqqq'" in err


# -- frame counts for the progress bar ----------------------------------------------------------------------------

def test_frame_count_from_the_container():
    assert _video_frames(str(sample_clip())) == 360
    assert _video_frames("no/such/file.mp4") is None
    assert _video_frames("rtsp://127.0.0.1:1/x") is None  # never opened here


def test_frame_count_estimated_when_the_container_has_none(tmp_path):
    """Matroska headers carry no frame count: duration x frame rate stands in."""
    import av

    path = tmp_path / "clip.mkv"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(20):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 10, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    with av.open(str(path)) as c:
        assert c.streams.video[0].frames == 0  # the case under test
    assert _video_frames(str(path)) in (19, 20, 21)


# -- a real scan: no native noise, no bar on a pipe, a bar with total and ETA on a terminal -----------------------

def _assert_quiet(err: str) -> None:
    for word in NOISE:
        assert word not in err, err[-3000:]


def test_scan_stderr_has_no_native_noise_and_no_bar_when_piped(tmp_path, small_export):
    env = {**os.environ, "MPLCONFIGDIR": str(tmp_path / "mpl")}  # an empty cache: matplotlib rebuilds its font list
    result = subprocess.run(scan_command(str(sample_clip()), "--model", str(small_export)), capture_output=True,
                            text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "360 frames" in result.stdout
    _assert_quiet(result.stderr)
    assert "frame/s" not in result.stderr and "\r" not in result.stderr, result.stderr[-3000:]


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pty")
def test_scan_bar_on_a_terminal_has_a_total_and_an_eta(small_export):
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a new pty is 0x0: tqdm draws nothing
    chunks = []

    def drain():
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO once the child has closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    proc = subprocess.Popen(scan_command(str(sample_clip()), "--model", str(small_export)), stdout=subprocess.PIPE,
                            stderr=slave, stdin=subprocess.DEVNULL, start_new_session=True)
    os.close(slave)
    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        out, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait(30)
        reader.join(10)
        os.close(master)
    err = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0, err[-3000:]
    assert re.search(r"\d+/360 \[\d\d:\d\d<\d\d:\d\d", err), err[-3000:]  # n/total [elapsed<remaining
    _assert_quiet(err)


def test_native_filter_drops_chatter_and_keeps_errors(capfd):
    from streamdetect.logs import native_stderr_filtered

    with native_stderr_filtered():
        os.write(2, b"INFO: [environment.cc:36] Creating LiteRT environment with options\n")
        os.write(2, b"W0000 00:00:1.2 1 inference_runner_litert.cc:1433] Input tensor memory is not aligned\n")
        os.write(2, b"ERROR: [model_load.cc:1] a real problem\n")
        with native_stderr_filtered():  # nested (another thread's detector, say)
            os.write(2, b"E0000 00:00:1.2 1 thing.cc:2] also real\n")
    os.write(2, b"after\n")
    err = capfd.readouterr().err
    assert err == "ERROR: [model_load.cc:1] a real problem\nE0000 00:00:1.2 1 thing.cc:2] also real\nafter\n"


# -- annotated labels -------------------------------------------------------------------------------------------

def _label_box(height: int):
    """Draw one face (same place relative to the frame) on a grey 16:9 frame; the label's filled-box pixels."""
    width = height * 16 // 9
    img = np.full((height, width, 3), 90, np.uint8)
    s = height / 720
    face = SimpleNamespace(box=(400 * s, 300 * s, 600 * s, 560 * s), track=7, confidence=0.91, verdict="alert")
    draw_faces(img, [face])
    above = img[: int(300 * s) - 3 * max(1, round(3 * s))]  # rows above the face box and its line
    ys, xs = np.nonzero(np.all(above == VERDICT_COLOURS["alert"], axis=2))
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    return above[y0:y1, x0:x1], (y1 - y0) * (x1 - x0)


def test_labels_scale_with_the_frame_and_sit_on_a_filled_box():
    boxes = {h: _label_box(h) for h in (360, 720, 1080)}
    areas = [boxes[h][1] for h in (360, 720, 1080)]
    assert areas[0] < areas[1] < areas[2], areas
    assert areas[2] / areas[1] > 1.8  # ~ (1080/720)^2: text grows in both directions
    label, _ = boxes[720]
    assert label.shape[0] >= 22, label.shape  # legible at 720p (was ~10 px of thin text)
    filled = np.all(label == VERDICT_COLOURS["alert"], axis=2).mean()
    text = np.all(label < 60, axis=2).mean()  # dark text on the red box
    assert filled > 0.5 and text > 0.05, (filled, text)


def test_preview_labels_stay_legible():
    img = np.full((270, 480, 3), 90, np.uint8)  # a live preview, boxes given in 1280x720 source pixels
    face = SimpleNamespace(box=(400, 300, 600, 560), track=1, confidence=None, verdict="unknown")
    draw_faces(img, [face], 480 / 1280)
    ys, _ = np.nonzero(np.all(img[:112] == VERDICT_COLOURS["unknown"], axis=2))
    assert ys.max() - ys.min() + 1 >= 12
