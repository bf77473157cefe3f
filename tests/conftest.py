import os

import numpy as np
import pytest
import torch

from streamdetect.model import ModelConfig, new_model


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Exports made on demand go to a per-test cache, never the user's."""
    monkeypatch.setenv("STREAMDETECT_CACHE", str(tmp_path / "cache"))
    # The event store's default data folder ($XDG_DATA_HOME/streamdetect): per test, never the user's.
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data-home"))


def realistic(model, seed: int = 0, batches: int = 3):
    """Give a randomly initialised model trained-like BatchNorm statistics and non-trivial LSTM/FC weights.

    Fresh torchvision trunks in eval mode output ~1e-9 (BN running stats are 0/1), which would let a broken
    export pass any tolerance. A few train-mode passes over random crops set the running statistics.
    """
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average
    s = model.card.config.input_size
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            model.encode(torch.randint(0, 256, (4, s, s, 3), generator=gen, dtype=torch.uint8))
        for p in (*model.lstm.parameters(), *model.head.parameters()):
            p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    return model.eval()


def small_model(backbone="mobilenet_v2", hidden=32, fusion=False, input_size=112, seed=0, temporal="lstm"):
    torch.manual_seed(seed)
    config = ModelConfig(backbone=backbone, input_size=input_size, hidden_size=hidden, fusion=fusion, temporal=temporal)
    return realistic(new_model(config), seed)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# -- shared fixtures for the live-service tests -------------------------------------------------------------
from pathlib import Path  # noqa: E402

# The research clips live beside the checkout (../shared/data) or where STREAMDETECT_DATA points. Tests that use
# them are extra cases: every behaviour they check also runs on footage made from the bundled sample clip.
DATA = Path(os.environ.get("STREAMDETECT_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
FFPP_REAL = "videos/real/ffpp_c40_youtube_183.mp4"  # a FaceForensics++ original (c40) ...
FFPP_FAKE = "videos/fake/ffpp_c40_Deepfakes_183_253.mp4"  # ... and a Deepfakes clip made from it


def shared_data_absent(what) -> str:
    """The skip message for a test that needs the shared research data (research licences: never in the repo)."""
    return f"{what} is absent: set STREAMDETECT_DATA to the research data folder (../shared/data) to run this case"


def shared_clip(relative: str) -> Path:
    """A clip from the shared research data (read in place, never copied into the repo); skips when it is absent."""
    path = DATA / relative
    if not path.is_file():
        pytest.skip(shared_data_absent(path))
    return path


@pytest.fixture(scope="session")
def small_export(tmp_path_factory):
    """A small randomly initialised model (MobileNetV2 + LSTM-32) exported to ONNX once per test session."""
    from streamdetect.export import export_model

    folder = tmp_path_factory.mktemp("small-export")
    export_model(small_model(hidden=32), folder)
    return folder


@pytest.fixture(scope="session")
def engine(small_export):
    from streamdetect.engines import load_engine

    return load_engine(small_export, backend="onnxruntime")


@pytest.fixture(scope="session")
def detector():
    from streamdetect.faces.detector import MediaPipeFaceDetector

    det = MediaPipeFaceDetector()
    yield det
    det.close()


def make_clip(path, seconds=2.0, fps=30, size=(320, 240), pattern="testsrc2"):
    """A real H.264 clip made by FFmpeg's own generator (through PyAV), keyframe every 15 frames."""
    import av

    with av.open(f"{pattern}=size={size[0]}x{size[1]}:rate={fps}:duration={seconds}", format="lavfi") as src, \
            av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.options = {"g": "15", "preset": "ultrafast"}
        for frame in src.decode(video=0):
            for packet in stream.encode(frame.reformat(format="yuv420p")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path
