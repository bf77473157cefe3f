"""The web dashboard in headless Chromium (Debian's), driven by Playwright, against the real service."""

import asyncio
import functools
import json
import re
import shutil
import threading
import urllib.error
import urllib.request
from urllib.parse import parse_qs, urlsplit
from pathlib import Path

import av
import pytest

from streamdetect.config import EventsConfig, ServerConfig, ServiceConfig, SourceConfig
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


# Evidence clips of 1 s before and after the alert complete within about 2 s of it (as in tests/test_events.py).
HISTORY_EVENTS = dict(clip_before_s=1.0, clip_after_s=1.0)
DRAWN_CANVAS = """c => { // more than the background, the grid and the axis: the confidence line and the threshold are there
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data, colours = new Set();
  for (let i = 0; i < d.length; i += 4) colours.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
  // every pixel: the dashed threshold is thin and anti-aliased, so its red is blended with the background
  const red = [...colours].some(v => (v >> 16) > 200 && ((v >> 8) & 255) < 130 && (v & 255) < 130);
  return colours.size > 8 && red;
}"""


def fulfil(route, *, json):
    route.fulfill(json=json)


def test_history_lists_plays_filters_and_deletes_events(engine, detector, browser, tmp_path):
    config = ServiceConfig(sources=(SourceConfig(str(sample_clip()), "cam", realtime=True, loop=True),), window=10,
                           scoring=ScoringConfig(alert=0.05, min_frames=3, min_dwell=1),  # every face alerts; the dashed line stays visible
                           server=ServerConfig(token="t0k", preview_hz=2),
                           events=EventsConfig(dir=str(tmp_path / "events"), **HISTORY_EVENTS))
    svc = ServiceThread(config, engine, detector)
    port = svc.start()
    base = f"http://127.0.0.1:{port}"
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(f"{base}/?token=t0k")
        page.wait_for_selector("#conn[data-state=connected]", timeout=15000)
        # The header's threshold is rounded (the model card's is 0.724604064657678 and the like).
        page.wait_for_selector("#model .threshold", timeout=15000)
        assert re.fullmatch(r"\d+(\.\d{1,2})?", page.inner_text("#model .threshold"))
        favicon = page.request.get(f"{base}/favicon.ico")
        assert favicon.ok and favicon.headers["content-type"] == "image/svg+xml" and b"<svg" in favicon.body()

        # live charts: axes over a fixed window, drawn as soon as a face is scored
        page.wait_for_selector("article[data-stream=cam] .face canvas[data-points]", timeout=60000)
        # wait (not assert once): the first drawing may come before the face's first alert colours it
        page.wait_for_function(f"({DRAWN_CANVAS})(document.querySelector('article[data-stream=cam] .face canvas'))",
                               timeout=60000)
        page.locator("article[data-stream=cam]").screenshot(path=str(tmp_path / "live-chart.png"))

        page.click("button[data-tab=history]")
        page.wait_for_selector("#h-table tbody tr[data-id]", timeout=60000)
        # an alert whose clip has been written (the list refreshes itself while the tab is open)
        row = page.locator("#h-table tbody tr[data-clip=complete]").first
        row.wait_for(timeout=60000)
        event_id = row.get_attribute("data-id")
        assert row.get_attribute("data-stream") == "cam"
        page.wait_for_function(f"document.querySelector(\"#h-table tr[data-id='{event_id}'] img\").naturalWidth > 0", timeout=15000)
        row.click()
        page.wait_for_selector(f"#h-selected[data-id='{event_id}']:not([hidden])", timeout=15000)
        page.wait_for_function("(v => v.readyState >= 1 && v.duration > 0)(document.querySelector('#h-video'))", timeout=30000)
        page.wait_for_selector(f"#h-chart[data-id='{event_id}'][data-points]", timeout=15000)
        assert int(page.get_attribute("#h-chart", "data-points")) >= 1
        page.wait_for_function(f"({DRAWN_CANVAS})(document.querySelector('#h-chart'))", timeout=15000)
        assert page.locator("#h-changes li").count() >= 1 and "alert" in page.inner_text("#h-changes")
        assert page.locator("#h-clip-msg").is_hidden()
        # the cursor follows the video: its position is the chart's time from clip_start
        page.eval_on_selector("#h-video", "v => { v.currentTime = Math.min(0.5, v.duration / 2); }")
        page.wait_for_function("""() => { const v = document.querySelector('#h-video'), c = document.querySelector('#h-chart');
            return c.dataset.cursor !== '' && Math.abs(parseFloat(c.dataset.cursor) - v.currentTime) < 0.01 && v.currentTime > 0; }""",
                               timeout=15000)
        page.screenshot(path=str(tmp_path / "history-selected.png"))

        # What the clip's state means, as the API could answer it: still recording, or failed with its reason.
        detail = page.request.get(f"{base}/api/events/{event_id}", headers={"Authorization": "Bearer t0k"}).json()
        for clip_state, error, shown in [("pending", None, "still recording"),
                                         ("failed", "the encoder stopped: disk full", "the encoder stopped: disk full")]:
            stub = {**detail, "clip_state": clip_state, "error": error}
            page.route(f"**/api/events/{event_id}", functools.partial(fulfil, json=stub))
            page.evaluate(f"selectEvent({event_id})")
            page.wait_for_function("t => document.querySelector('#h-clip-msg').textContent.includes(t)", arg=shown, timeout=15000)
            assert page.locator("#h-video").is_hidden() and page.locator("#h-clip-msg").is_visible()
            page.screenshot(path=str(tmp_path / f"history-clip-{clip_state}.png"))
            page.unroute(f"**/api/events/{event_id}")
        page.evaluate(f"selectEvent({event_id})")
        page.wait_for_function("(v => v.readyState >= 1 && v.duration > 0)(document.querySelector('#h-video'))", timeout=30000)

        # a time range around now keeps the event; one that ends before it starts is refused with a message
        page.select_option("#h-range", "custom")
        page.evaluate("""() => { document.querySelector('#h-since').value = localInput(Date.now() / 1000 - 3600);
                                 document.querySelector('#h-until').value = localInput(Date.now() / 1000 + 3600); }""")
        page.click("#h-filters button[type=submit]")
        page.wait_for_selector(f"#h-table tbody tr[data-id='{event_id}']", timeout=15000)
        page.evaluate("document.querySelector('#h-until').value = localInput(Date.now() / 1000 - 7200)")
        page.click("#h-filters button[type=submit]")
        page.wait_for_selector("#h-error:not([hidden])", timeout=15000)
        assert "ends before it starts" in page.inner_text("#h-error")
        page.screenshot(path=str(tmp_path / "history-range-error.png"))
        page.click("#h-reset")
        page.wait_for_selector("#h-error", state="hidden", timeout=15000)

        # a stream that does not exist: nothing listed, and the page says so
        page.fill("#h-stream", "no-such-camera")
        page.click("#h-filters button[type=submit]")
        page.wait_for_selector("#h-empty:not([hidden])", timeout=15000)
        assert page.locator("#h-table tbody tr").count() == 0
        assert "No events match these filters" in page.inner_text("#h-empty")
        page.screenshot(path=str(tmp_path / "history-empty.png"))
        page.click("#h-reset")
        page.wait_for_selector(f"#h-table tbody tr[data-id='{event_id}']", timeout=15000)

        # delete the selected event: confirmed, gone from the list and from the store
        page.once("dialog", lambda dialog: dialog.accept())
        page.click("#h-delete")
        page.wait_for_selector(f"#h-table tbody tr[data-id='{event_id}']", state="detached", timeout=15000)
        page.wait_for_selector("#h-selected", state="hidden", timeout=15000)
        request = urllib.request.Request(f"{base}/api/events/{event_id}", headers={"Authorization": "Bearer t0k"})
        with pytest.raises(urllib.error.HTTPError) as gone:
            urllib.request.urlopen(request, timeout=30)
        assert gone.value.code == 404 and "no event" in json.loads(gone.value.read())["error"]
        page.screenshot(path=str(tmp_path / "history-after-delete.png"))

        # paging, over a stubbed list of 45 events: 20 a page, newest first
        def fake_list(route):
            offset = int(parse_qs(urlsplit(route.request.url).query)["offset"][0])
            events = [{**detail, "id": 1000 - i, "track": 100 + i, "has_thumbnail": False}
                      for i in range(offset, min(offset + 20, 45))]
            route.fulfill(json={"events": events, "total": 45, "limit": 20, "offset": offset,
                                "next_offset": offset + 20 if offset + 20 < 45 else None})

        page.route("**/api/events?*", fake_list)
        page.click("#h-filters button[type=submit]")
        page.wait_for_function("document.querySelector('#h-page').textContent === '1–20 of 45'", timeout=15000)
        assert page.is_disabled("#h-prev") and not page.is_disabled("#h-next")
        for shown in ("21–40 of 45", "41–45 of 45"):
            page.click("#h-next")
            page.wait_for_function("t => document.querySelector('#h-page').textContent === t", arg=shown, timeout=15000)
        assert page.is_disabled("#h-next") and page.locator("#h-table tbody tr").count() == 5
        page.screenshot(path=str(tmp_path / "history-last-page.png"))
        page.click("#h-prev")
        page.wait_for_function("document.querySelector('#h-page').textContent === '21–40 of 45'", timeout=15000)
        page.unroute("**/api/events?*")

        # without the token the page says what is wrong instead of showing an empty list
        stranger = browser.new_page(viewport={"width": 1300, "height": 700})
        stranger.goto(f"{base}/")
        stranger.click("button[data-tab=history]")
        stranger.wait_for_selector("#h-error:not([hidden])", timeout=15000)
        assert "token" in stranger.inner_text("#h-error")
        stranger.screenshot(path=str(tmp_path / "history-no-token.png"))
        stranger.close()
        assert not errors, errors
    finally:
        svc.stop()
    print(f"screenshots in {tmp_path}")
