"""The event store end to end: a real service records events and clips in SQLite, serves them over HTTP, replays
alerts after a restart, enforces retention while running, survives kill -9, and keeps events when clips fail."""

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import av
import pytest
from websockets.asyncio.client import connect
from websockets.sync.client import connect as ws_connect

from streamdetect.config import EventsConfig, ServerConfig, ServiceConfig, SourceConfig
from streamdetect.events.recorder import EventRecorder
from streamdetect.scoring import ScoringConfig
from streamdetect.service import Service, sample_clip
from tests.support.processes import Pumped, stop

ALERT_ALWAYS = ScoringConfig(alert=0.0, min_frames=3, min_dwell=1)  # every face alerts: tests the recording path


def config(folder: Path, token: str | None = "t0k", **events) -> ServiceConfig:
    source = SourceConfig(str(sample_clip()), "cam", realtime=True, loop=True)
    return ServiceConfig(sources=(source,), window=10, scoring=ALERT_ALWAYS,
                         server=ServerConfig(port=0, token=token, preview_hz=0),
                         events=EventsConfig(dir=str(folder), clip_before_s=1.0, clip_after_s=1.0, **events))


def api(port: int, path: str, token: str | None = "t0k", method: str = "GET"):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=30) as reply:
        body = reply.read()
        return json.loads(body) if reply.headers["Content-Type"] == "application/json" else body


def ranged(port: int, path: str, byte_range: str, token: str = "t0k"):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                     headers={"Authorization": f"Bearer {token}", "Range": byte_range})
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, reply.headers, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def status_of(port: int, path: str, **kw) -> int:
    try:
        api(port, path, **kw)
        return 200
    except urllib.error.HTTPError as exc:
        return exc.code


async def call(fn, *args, **kwargs):
    """Blocking HTTP from a test coroutine: in a worker thread, since the service shares this event loop."""
    return await asyncio.to_thread(fn, *args, **kwargs)


async def wait_for(predicate, timeout: float = 60.0, every: float = 0.3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await asyncio.to_thread(predicate)
        if value:
            return value
        await asyncio.sleep(every)
    raise AssertionError(f"condition not met within {timeout} s")


def test_events_clips_and_http_api(engine, detector, tmp_path):
    async def scenario():
        service = Service(config(tmp_path / "data"), engine, detector)
        port = await service.start()
        try:
            def complete_event():
                events = api(port, "/api/events?verdict=alert")["events"]
                return next((e for e in events if e["clip_state"] == "complete"), None)

            event = await wait_for(complete_event)
            assert event["stream"] == "cam" and event["verdict"] == "alert" and event["has_thumbnail"]
            full = await call(api, port, f"/api/events/{event['id']}")
            assert [c["verdict"] for c in full["changes"]][-1] == "alert"
            assert len(full["timeline"]) >= 1 and all(0 <= c <= 1 for _, c in full["timeline"])
            assert full["peak_confidence"] >= max(c["confidence"] for c in full["changes"])

            clip = tmp_path / "clip.mp4"
            clip.write_bytes(await call(api, port, f"/api/events/{event['id']}/clip.mp4"))
            with av.open(str(clip)) as c:
                stream = c.streams.video[0]
                assert stream.codec_context.name == "h264"
                frames = list(c.decode(video=0))
            span = float(frames[-1].pts * stream.time_base)
            assert len(frames) >= 5 and 0.5 <= span <= 2.5  # 1 s before + 1 s after the alert, at the processed rate
            assert (await call(api, port, f"/api/events/{event['id']}/thumbnail.jpg"))[:3] == b"\xff\xd8\xff"  # a JPEG
            # players seek with Range requests: 206 with the asked bytes, 416 past the end
            whole = clip.read_bytes()
            status, headers, part = await call(ranged, port, f"/api/events/{event['id']}/clip.mp4", "bytes=100-199")
            assert status == 206 and part == whole[100:200] and headers["Content-Range"] == f"bytes 100-199/{len(whole)}"
            status, _, tail = await call(ranged, port, f"/api/events/{event['id']}/clip.mp4", "bytes=-50")
            assert status == 206 and tail == whole[-50:]
            assert (await call(ranged, port, f"/api/events/{event['id']}/clip.mp4", f"bytes={len(whole)}-"))[0] == 416

            # filters and pagination
            assert (await call(api, port, "/api/events?stream=elsewhere"))["total"] == 0
            assert (await call(api, port, "/api/events?min_confidence=1.01"))["total"] == 0
            page = await call(api, port, "/api/events?limit=1")
            assert len(page["events"]) == 1 and (page["next_offset"] == 1) == (page["total"] > 1)
            assert (await call(api, port, f"/api/events?since={event['started']}&until={event['started'] + 0.001}"))["events"][0]["id"] == event["id"]
            # bad input names the problem; no token, no events
            with pytest.raises(urllib.error.HTTPError) as bad:
                await call(api, port, "/api/events?limit=lots")
            assert bad.value.code == 400 and "limit must be a whole number" in json.loads(bad.value.read())["error"]
            assert await call(status_of, port, "/api/events", token=None) == 401
            assert await call(status_of, port, "/api/events/999999") == 404

            # delete: the row and its clip file go
            clip_file = tmp_path / "data" / "clips" / f"{event['id']}.mp4"
            assert clip_file.is_file()
            assert await call(api, port, f"/api/events/{event['id']}", method="DELETE") == {"deleted": event["id"]}
            assert await call(status_of, port, f"/api/events/{event['id']}") == 404 and not clip_file.exists()
            assert await call(status_of, port, "/favicon.ico", token=None) == 200
        finally:
            await service.stop()

    asyncio.run(scenario())


def test_restart_replays_alerts_from_the_store(engine, detector, tmp_path):
    folder = tmp_path / "data"

    async def scenario():
        first = Service(config(folder, token=None), engine, detector)
        await first.start()
        await wait_for(lambda: first.events.store.recent_alerts(10))
        await asyncio.to_thread(first.events.flush)
        recorded = [d for d, _ in first.events.store.recent_alerts(50)]
        await first.stop()

        # Restarted with no faces to see: whatever a new subscriber gets as alerts came from the store.
        second = Service(ServiceConfig(sources=(SourceConfig(str(sample_clip()), "cam"),), window=10,
                                       server=ServerConfig(port=0), events=EventsConfig(dir=str(folder))),
                         engine, detector)
        port = await second.start()
        try:
            async with connect(f"ws://127.0.0.1:{port}/ws?types=alert") as ws:
                await ws.recv()  # hello
                replayed = [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in recorded]
            assert [(m["track"], m["verdict"], m["ts"]) for m in replayed] == \
                   [(m["track"], m["verdict"], m["ts"]) for m in recorded]
        finally:
            await second.stop()

    asyncio.run(scenario())


def test_retention_runs_while_serving(engine, detector, tmp_path):
    async def scenario():
        # A disk budget smaller than one clip: every finished clip is removed by the next retention pass.
        service = Service(config(tmp_path / "data", token=None, max_disk_mb=0.001, retention_every_s=0.5),
                          engine, detector)
        await service.start()
        store = service.events.store
        try:
            # An event whose clip is still recording (~1 s after its first verdict) ...
            pending = await wait_for(lambda: store._rows("SELECT id FROM events WHERE clip_state = 'pending'"))
            event_id = pending[0]["id"]
            # ... goes once its clip is written: retention removes only events older than max_age_days or with a
            # written clip (clip_bytes > 0), so its disappearing means the clip was written and then removed.
            await wait_for(lambda: not store._rows("SELECT id FROM events WHERE id = ?", (event_id,)), timeout=90)
            assert not (tmp_path / "data" / "clips" / f"{event_id}.mp4").exists()
        finally:
            await service.stop()

    asyncio.run(scenario())


def test_age_retention_removes_old_events_with_their_files(tmp_path):
    recorder = EventRecorder(EventsConfig(dir=str(tmp_path), max_age_days=1))
    try:
        old = recorder.store.record_track("cam", 1, time.time() - 3 * 86400, time.time() - 2 * 86400, "clear", 0.1, 30)
        new = recorder.store.record_track("cam", 2, time.time() - 60, time.time() - 30, "clear", 0.1, 30)
        clip = tmp_path / "clips" / f"{old}.mp4"
        clip.parent.mkdir(exist_ok=True)
        clip.write_bytes(b"x" * 1000)
        recorder.store.update_event(old, clip_state="complete", clip_path=str(clip), clip_bytes=1000)
        assert recorder.enforce_retention() == 1
        assert recorder.store.get(old) is None and recorder.store.get(new) is not None and not clip.exists()
    finally:
        recorder.close()


def test_a_failed_clip_write_keeps_the_event_and_reports_it(engine, detector, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "clips").write_text("a file where the clips folder should be")  # every clip write fails (ENOTDIR)

    async def scenario():
        service = Service(config(folder, token=None), engine, detector)
        port = await service.start()
        try:
            async with connect(f"ws://127.0.0.1:{port}/ws?types=error") as ws:
                await ws.recv()  # hello
                error = json.loads(await asyncio.wait_for(ws.recv(), 60))
            assert "evidence clip not written" in error["message"]
            events = (await call(api, port, "/api/events?verdict=alert", token=None))["events"]
            failed = [e for e in events if e["clip_state"] == "failed"]
            assert failed and "clip not written" in failed[0]["error"]
            assert await call(status_of, port, f"/api/events/{failed[0]['id']}/clip.mp4", token=None) == 404
            assert service.pipeline.running  # the service kept going
        finally:
            await service.stop()

    asyncio.run(scenario())


def _serve(cfg: Path):
    """`streamdetect serve --config cfg` in its own process group; returns (process, port) once it is ready."""
    proc = subprocess.Popen([sys.executable, "-m", "streamdetect", "serve", "--config", str(cfg)], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    out = Pumped(proc.stdout)
    while True:
        line = out.readline(timeout=180)
        assert line, "serve ended before it was ready"
        if "dashboard at http://" in line:
            return proc, int(line.rsplit(":", 1)[1].strip().strip("/"))


def test_kill_9_then_restart_keeps_every_alert_and_clip(tmp_path):
    """The issue's 'done when': SIGKILL mid-stream, restart, and every alert raised before the kill is there through
    the API, its clip playable or marked incomplete; the restarted service stops on SIGTERM within 5 s."""
    folder = tmp_path / "data"
    cfg = tmp_path / "serve.yaml"
    cfg.write_text(json.dumps({  # YAML is a superset of JSON
        "sources": [{"url": str(sample_clip()), "name": "cam", "realtime": True, "loop": True}],
        "scoring": {"alert": 0.0, "min_frames": 3, "min_dwell": 1},
        "server": {"port": 0},
        "events": {"dir": str(folder), "clip_before_s": 1.0, "clip_after_s": 4.0},
    }))
    proc, port = _serve(cfg)
    alerts = []
    try:
        with ws_connect(f"ws://127.0.0.1:{port}/ws?types=alert", open_timeout=30) as ws:
            ws.recv(timeout=30)  # hello
            deadline = time.monotonic() + 120
            recording = set()
            while time.monotonic() < deadline and not recording:
                try:
                    alerts.append(json.loads(ws.recv(timeout=1)))
                except TimeoutError:
                    pass
                events = api(port, "/api/events?limit=500", token=None)["events"]
                if any(e["clip_state"] == "complete" for e in events):
                    # clips with at least ~1.5 s of recording left: still pending when the kill lands
                    recording = {e["id"] for e in events if e["clip_state"] == "pending" and e["started"] > time.time() - 2.5}
            assert alerts and recording, "no finished clip and no clip being recorded in time"
            time.sleep(0.3)  # alerts are written within milliseconds of being sent: let the last ones land
            while True:
                try:
                    alerts.append(json.loads(ws.recv(timeout=0.05)))
                except TimeoutError:
                    break
            os.killpg(proc.pid, signal.SIGKILL)  # mid-stream, clips being recorded
            proc.wait(30)
    finally:
        stop(proc)

    with sqlite3.connect(folder / "events.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    proc, port = _serve(cfg)  # the restart
    try:
        events = api(port, "/api/events?limit=500", token=None)["events"]
        recorded = {(c["ts"], c["verdict"]) for e in events for c in api(port, f"/api/events/{e['id']}", token=None)["changes"]}
        assert {(a["ts"], a["verdict"]) for a in alerts} <= recorded  # every alert a client saw was kept
        before = [e for e in events if e["started"] <= max(a["ts"] for a in alerts)]
        assert {e["clip_state"] for e in before} <= {"complete", "incomplete"}
        assert {e["id"]: e["clip_state"] for e in before if e["id"] in recording} == dict.fromkeys(recording, "incomplete")
        assert all(e["ended"] is not None for e in before) and not list((folder / "clips").glob("*.part"))
        clip = tmp_path / "clip.mp4"
        clip.write_bytes(api(port, f"/api/events/{next(e['id'] for e in before if e['clip_state'] == 'complete')}/clip.mp4", token=None))
        with av.open(str(clip)) as c:
            assert len(list(c.decode(video=0))) >= 5  # plays
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0 and time.monotonic() - started < 5
    finally:
        stop(proc)
