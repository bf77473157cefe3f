"""Serving needs no torch: `pip install 'streamdetect[cpu]'` runs serve, scan and bench on the bundled model.

Run in two ways: in the full install every command runs through tests/support/without_torch.py, which makes torch,
torchvision, efficientnet-lite-pytorch and onnx unimportable; CI also runs this file with a real torch-free venv's
python (`--noconftest`: the suite's conftest builds torch models), where STREAMDETECT_TORCH_FREE=1 makes it check
that torch is really absent.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from streamdetect.engines.layout import CARD_FILE, is_export_dir
from streamdetect.loading import SOURCE_FILE
from streamdetect.model import ModelCard, read_card
from streamdetect.service import default_model, sample_clip
from tests.support import processes

WITHOUT_TORCH = Path(__file__).parent / "support" / "without_torch.py"


@pytest.fixture
def env(tmp_path):
    """A private export cache (it must stay empty: nothing is exported) and unbuffered output."""
    return {**os.environ, "STREAMDETECT_CACHE": str(tmp_path / "cache"), "XDG_DATA_HOME": str(tmp_path / "data"),
            "PYTHONUNBUFFERED": "1"}


def command(*args) -> list[str]:
    return [sys.executable, str(WITHOUT_TORCH), *args]


def run(*args, env, cwd=None):
    return processes.run(command(*args), timeout=600, env=env, cwd=cwd)


@pytest.mark.skipif(os.environ.get("STREAMDETECT_TORCH_FREE") != "1", reason="only in the torch-free venv (CI)")
def test_this_venv_has_no_torch():
    import importlib.util

    assert [p for p in ("torch", "torchvision", "efficientnet_lite_pytorch", "onnx") if importlib.util.find_spec(p)] == []


def test_help_loads_no_runtime():
    """`streamdetect --help` stays fast: building the parser imports no runtime, framework or NumPy."""
    code = ("import sys; from streamdetect.cli import build_parser; build_parser(); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'numpy', 'onnxruntime', 'cv2', "
            "'mediapipe', 'av', 'onnx', 'safetensors'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


def test_bundled_model_ships_exported_from_its_checkpoint():
    checkpoint = default_model()
    folder = checkpoint.with_suffix("")
    assert is_export_dir(folder)
    source = json.loads((folder / SOURCE_FILE).read_text())
    assert source["sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert len(source["validated"]) == 2 and all("max |onnx - torch|" in r for r in source["validated"])
    assert ModelCard.from_json((folder / CARD_FILE).read_text()) == read_card(checkpoint)  # no torch needed
    assert sum(f.stat().st_size for f in folder.iterdir()) < 20 * 2**20


def test_scan_runs_the_shipped_export_without_torch(env, tmp_path):
    out = tmp_path / "out.json"
    result = run("scan", str(sample_clip()), "--json", str(out), env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "using the pre-exported graphs" in result.stderr
    data = json.loads(out.read_text())
    assert data["frames_with_faces"] > 0 and data["tracks"] and data["model"]["name"] == read_card(default_model()).name
    assert not (tmp_path / "cache" / "exports").exists()  # nothing was exported


def test_bench_defaults_to_the_bundled_model(env):
    result = run("bench", "--backend", "onnxruntime", "--batch", "1", "--seconds", "0", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"model: {read_card(default_model()).name}" in result.stdout and "onnxruntime" in result.stdout


def test_torch_commands_name_their_extra(env, tmp_path):
    cases = [
        (("init", "--out", str(tmp_path / "m.safetensors")), "streamdetect[torch]"),
        (("export", str(default_model()), "--out", str(tmp_path / "x")), "streamdetect[export]"),
        (("scan", str(sample_clip()), "--backend", "torch"), "streamdetect[torch]"),
    ]
    # A checkpoint without a shipped export needs torch to be exported first.
    other = tmp_path / "copy.safetensors"
    other.write_bytes(default_model().read_bytes())
    cases.append((("scan", str(sample_clip()), "--model", str(other)), "streamdetect[export]"))
    for args, extra in cases:
        result = run(*args, env=env)
        assert result.returncode == 2 and f"pip install '{extra}'" in result.stderr, (args, result.stderr[-2000:])
        assert "Traceback" not in result.stderr


def test_serve_streams_scores_without_torch(env):
    from websockets.asyncio.client import connect

    with processes.child(command("serve", "--port", "0"), sig=signal.SIGINT, grace=30, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env) as proc:
        out, err = processes.Pumped(proc.stdout), processes.Pumped(proc.stderr)
        banner = out.readline(300) + out.readline(60)
        match = re.search(r"ws://127\.0\.0\.1:(\d+)/ws", banner)
        assert "serving sample" in banner and match, banner + err.text(1)[-2000:]

        async def scores():
            async with connect(f"ws://127.0.0.1:{match.group(1)}/ws") as ws:
                for _ in range(300):
                    m = json.loads(await asyncio.wait_for(ws.recv(), 30))
                    if m["type"] == "scores" and m["faces"]:
                        return m
            return None

        assert asyncio.run(scores()) is not None
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
    assert "using the pre-exported graphs" in err.text()
