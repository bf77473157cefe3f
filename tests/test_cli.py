"""The `streamdetect` command, run as a user runs it (a subprocess of the installed console script)."""

import json
import shutil
import subprocess
import sys

import pytest

from streamdetect.model import read_card
from tests.support import processes


def command(*args) -> list[str]:
    """The installed console script when it is on PATH, else the same entry point through this interpreter."""
    exe = shutil.which("streamdetect")
    return [exe, *args] if exe else [sys.executable, "-m", "streamdetect.cli", *args]


def run(*args, cwd=None, env=None):
    """Run the command to the end; on a timeout it is killed with everything it started, then the test fails."""
    return processes.run(command(*args), timeout=600, cwd=cwd, env=env)


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "small.safetensors"
    result = run("init", "--out", str(path), "--backbone", "mobilenet_v2", "--hidden-size", "32", "--fusion")
    assert result.returncode == 0, result.stderr
    return path


def test_init_writes_the_requested_architecture(small_checkpoint):
    card = read_card(small_checkpoint)
    assert (card.config.backbone, card.config.hidden_size, card.config.fusion) == ("mobilenet_v2", 32, True)


def test_export_then_bench_the_export(small_checkpoint, tmp_path):
    out = tmp_path / "export"
    result = run("export", str(small_checkpoint), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "validated encoder" in result.stdout and "validated step" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == ["card.json", "encoder.onnx", "step.onnx"]

    report = tmp_path / "bench.json"
    result = run("bench", "--model", str(out), "--backend", "onnxruntime", "--batch", "2", "--seconds", "0", "--json", str(report))
    assert result.returncode == 0, result.stderr
    assert "hardware:" in result.stdout and "faces/s" in result.stdout
    data = json.loads(report.read_text())
    assert {(r["graph"], r["batch"]) for r in data["results"]} == {("encoder", 2), ("step", 2)}
    assert all(r["faces_per_s"] > 0 and r["p95_ms"] >= r["p50_ms"] > 0 for r in data["results"])


def test_bench_on_bundled_defaults(tmp_path):
    """The quick start's main job: the paper's full model (ResNeXt50 + LSTM-2048), exported, validated, timed."""
    import os

    env = {**os.environ, "STREAMDETECT_CACHE": str(tmp_path)}
    report = tmp_path / "bench.json"
    result = run("bench", "--seconds", "0", "--batch", "1", "--json", str(report), env=env)
    assert result.returncode == 0, result.stderr
    assert "step: max |onnx - torch|" in result.stderr  # the paper's graphs were validated before timing
    backends = {r["backend"] for r in json.loads(report.read_text())["results"]}
    assert {"onnxruntime", "torch"} <= backends
    assert "vs torch" in result.stdout


def test_errors_are_one_clear_line(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")
    result = run("export", str(bad), "--out", str(tmp_path / "x"))
    assert result.returncode == 2
    assert "error:" in result.stderr and "bad.safetensors" in result.stderr
    assert "Traceback" not in result.stderr

    result = run("export", str(bad), "--out", str(tmp_path / "x"), "--fp16")
    assert result.returncode == 2 and "--fp16 does not apply to onnx" in result.stderr


def test_card_and_backends_commands(small_checkpoint):
    result = run("card", str(small_checkpoint))
    assert json.loads(result.stdout)["config"]["backbone"] == "mobilenet_v2"
    assert "int8" not in json.loads(result.stdout)  # no export beside it, so no INT8 decision to show
    shipped = json.loads(run("card", "streamdetect/weights/default.safetensors").stdout)
    # v3's INT8 encoder was 1.8x faster but moved p_fake by 0.021 on average (policy: 0.02), so FP32 serves
    assert shipped["int8"]["graphs"] == {"encoder": "fp32", "step": "fp32"} and shipped["int8"]["reasons"]
    result = run("backends")
    assert "onnxruntime  available" in result.stdout and "tensorrt" in result.stdout


def test_serve_runs_the_bundled_sample_and_stops_cleanly(small_export):
    """The README's main job: `streamdetect serve` on the bundled sample, reachable over WebSockets."""
    import asyncio
    import os
    import re
    import signal

    from websockets.asyncio.client import connect

    # Its own process group, so the server and anything it starts die with the test: stopped with SIGINT (the
    # graceful path under test), killed as a group if it hangs or an assertion fails first.
    with processes.child(command("serve", "--port", "0", "--model", str(small_export)), sig=signal.SIGINT, grace=30,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONUNBUFFERED": "1"}) as proc:
        out, err = processes.Pumped(proc.stdout), processes.Pumped(proc.stderr)
        banner = out.readline(300) + out.readline(60)  # the first start may export and load models on a busy box
        match = re.search(r"ws://127\.0\.0\.1:(\d+)/ws", banner)
        assert "serving sample" in banner and match, banner + err.text(1)[-2000:]

        async def listen():
            async with connect(f"ws://127.0.0.1:{match.group(1)}/ws") as ws:
                types, faces = set(), 0
                for _ in range(200):
                    m = json.loads(await asyncio.wait_for(ws.recv(), 30))
                    types.add(m["type"])
                    if m["type"] == "scores":
                        faces = max(faces, len(m["faces"]))
                    if {"hello", "status", "scores"} <= types and faces:
                        return types, faces
                return types, faces

        types, faces = asyncio.run(listen())
        assert {"hello", "status", "scores"} <= types and faces == 1
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"serve did not stop within 60 s of SIGINT: {err.text(1)[-2000:]}")
    assert code == 0, err.text()[-2000:]
    assert "Traceback" not in err.text()
