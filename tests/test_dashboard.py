"""The web dashboard in headless Chromium (Debian's), driven by Playwright, against the real service."""

import asyncio
import shutil
import threading
from pathlib import Path

import av
import pytest

from streamdetect.config import ServerConfig, ServiceConfig, SourceConfig
from streamdetect.scoring import ScoringConfig
from streamdetect.service import Service, sample_clip
from tests.conftest import DATA

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (apt-get install chromium)")


class ServiceThread:
    """The real service on its own event loop, so the (synchronous) browser driver can run in the test thread."""

    def __init__(self, config, engine, detector):
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.config, self.engine, self.detector = config, engine, detector
        self.service = None

    def start(self, port: int = 0) -> int:
        import dataclasses

        config = dataclasses.replace(self.config, server=dataclasses.replace(self.config.server, port=port))
        self.service = Service(config, self.engine, self.detector)
        return asyncio.run_coroutine_threadsafe(self.service.start(), self.loop).result(60)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.service.stop(), self.loop).result(60)


def short_clip(path: Path, frames: int = 75) -> Path:
    """The first `frames` frames of the bundled sample (a real face), re-encoded: a quick upload."""
    with av.open(str(sample_clip())) as src, av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        for i, frame in enumerate(src.decode(video=0)):
            if i == frames:
                break
            for packet in stream.encode(frame.reformat(640, 360, "yuv420p")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def test_live_dashboard_alerts_and_recovers_after_restart(engine, detector, browser, tmp_path):
    fake = DATA / "videos/fake/ffpp_c40_Deepfakes_183_253.mp4"
    clip = fake if fake.is_file() else sample_clip()
    # The shipped model is still untrained, so the alert level is set to 0 to make every face alert: this tests
    # the alert path (message, thumbnail, feed), not detection quality.
    config = ServiceConfig(sources=(SourceConfig(str(clip), "cam", realtime=True, loop=True),), window=10,
                           scoring=ScoringConfig(alert=0.0, min_frames=3, min_dwell=1),
                           server=ServerConfig(token="t0k", preview_hz=4))
    svc = ServiceThread(config, engine, detector)
    port = svc.start()
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    try:
        page.goto(f"http://127.0.0.1:{port}/?token=t0k")
        page.wait_for_selector("#conn[data-state=connected]", timeout=15000)
        card = page.locator("article.stream[data-stream=cam]")
        card.locator(".badge.online").wait_for(timeout=15000)
        first = card.locator(".frame").inner_text()
        page.wait_for_function("f => document.querySelector('article[data-stream=cam] .frame').textContent !== f", arg=first, timeout=10000)
        # processed fps is a rolling rate: the first status may come before a frame has been processed.
        page.wait_for_function("parseFloat(document.querySelector('article[data-stream=cam] .processed-fps').textContent) > 0", timeout=15000)
        page.wait_for_selector(".alert-item[data-stream=cam] img[src^='data:image/jpeg']", timeout=20000)
        page.wait_for_function("document.querySelector('article[data-stream=cam] .preview').naturalWidth > 0", timeout=10000)
        assert card.locator(".face.alert canvas").count() >= 1
        page.screenshot(path=str(tmp_path / "dashboard-live.png"))

        svc.stop()  # the service restarts: the page must say so, then come back by itself
        page.wait_for_selector("#conn[data-state=disconnected]", timeout=15000)
        page.screenshot(path=str(tmp_path / "dashboard-disconnected.png"))
        svc.start(port)
        page.wait_for_selector("#conn[data-state=connected]", timeout=30000)
        card.locator(".badge.online").wait_for(timeout=15000)
        page.screenshot(path=str(tmp_path / "dashboard-reconnected.png"))
    finally:
        svc.stop()
    print(f"screenshots in {tmp_path}")


def test_upload_shows_verdict_and_annotated_playback(engine, detector, browser, tmp_path):
    config = ServiceConfig(sources=(), server=ServerConfig(upload_max_mb=5, upload_dir=str(tmp_path / "uploads")))
    svc = ServiceThread(config, engine, detector)
    port = svc.start()
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    try:
        page.goto(f"http://127.0.0.1:{port}/")
        page.click("button[data-tab=upload]")
        page.set_input_files("#file", str(short_clip(tmp_path / "face.mp4")))
        page.wait_for_selector("#upload-result:not([hidden])", timeout=60000)
        assert page.inner_text("#upload-verdict").split()[0] in ("REAL", "FAKE")
        assert page.locator("#upload-tracks tbody tr").count() >= 1
        page.wait_for_function("document.querySelector('#upload-video').readyState >= 1", timeout=15000)
        assert page.evaluate("document.querySelector('#upload-video').duration") == pytest.approx(2.5, abs=0.2)
        page.screenshot(path=str(tmp_path / "upload-result.png"))
        leftovers = [p.name for p in (tmp_path / "uploads").iterdir()]
        assert len(leftovers) == 1 and leftovers[0].endswith(".mp4") and ".upload" not in leftovers[0]

        junk = tmp_path / "broken.mp4"
        junk.write_bytes(b"definitely not a video" * 100)
        page.set_input_files("#file", str(junk))
        page.wait_for_selector("#upload-error:not([hidden])", timeout=30000)
        assert "could not scan the video" in page.inner_text("#upload-error")
        big = tmp_path / "big.mp4"
        big.write_bytes(b"\0" * 6_000_000)
        page.set_input_files("#file", str(big))
        page.wait_for_function("document.querySelector('#upload-error').textContent.includes('limit is 5 MB')", timeout=15000)
        page.screenshot(path=str(tmp_path / "upload-error.png"))
        assert [p.name for p in (tmp_path / "uploads").iterdir()] == leftovers  # refused files left nothing behind
    finally:
        svc.stop()
