"""The service on a real RTSP camera (GStreamer's gst-rtsp-server on loopback), through a server restart."""

import asyncio
import json
import time

import pytest
from websockets.asyncio.client import connect

from streamdetect.config import ServerConfig, ServiceConfig, SourceConfig
from streamdetect.service import Service, sample_clip
from tests.support.rtsp import RtspServer, rtsp_available


@pytest.fixture
def camera():
    reason = rtsp_available()
    if reason:
        pytest.skip(reason)
    with RtspServer() as server:
        server.publish(sample_clip(), "/cam1")  # H.264 720p30 with a face, looping at real-time pace
        yield server


def test_rtsp_camera_survives_a_server_restart(camera, engine, detector):
    config = ServiceConfig(sources=(SourceConfig(camera.url("/cam1"), "cam"),), window=10,
                           server=ServerConfig(port=0, status_interval_s=0.5))

    async def scenario():
        service = Service(config, engine, detector)
        port = await service.start()
        log = []  # (phase, message)
        try:
            async with connect(f"ws://127.0.0.1:{port}/ws?streams=cam&types=scores,status") as ws:
                await ws.recv()  # hello

                async def listen(phase, until, seconds):
                    deadline = time.monotonic() + seconds
                    while time.monotonic() < deadline:
                        try:
                            m = json.loads(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
                        except asyncio.TimeoutError:
                            return False
                        log.append((phase, m))
                        if until(m):
                            return True
                    return False

                with_face = lambda m: m["type"] == "scores" and len(m["faces"]) == 1  # noqa: E731
                # (the timeouts only bound a failure: each listen() returns as soon as it has seen what it waits for)
                assert await listen("before", with_face, 60), "no face scores from the RTSP camera"
                await asyncio.to_thread(camera.restart, 2.0)  # the camera reboots: 2 s without a server
                assert await listen("during", lambda m: m["type"] == "status" and m["state"] == "reconnecting", 60)
                assert await listen("after", with_face, 60), "scores did not resume after the camera came back"
                # Back online after the reconnect. The status is periodic (0.5 s), so the first face score can come
                # before "online" is reported: wait for it rather than expect it among the messages so far.
                assert await listen("after", lambda m: m["type"] == "status" and m["state"] == "online", 60)
        finally:
            await service.stop()
        return log

    log = asyncio.run(scenario())
    before = [m["frame"] for phase, m in log if phase == "before" and m["type"] == "scores"]
    after = [m["frame"] for phase, m in log if phase == "after" and m["type"] == "scores"]
    assert after[-1] > before[-1]  # frame counter keeps counting across the reconnect
    ids = lambda phase: {f["track"] for p, m in log if p == phase and m["type"] == "scores" for f in m["faces"]}  # noqa: E731
    assert ids("after") and not ids("after") & ids("before")  # no identity carried over the outage
    online_after = [m for phase, m in log if phase == "after" and m["type"] == "status" and m["state"] == "online"]
    latency = online_after[-1]["latency_ms"] if online_after else None
    # Reported and consistent after the reconnect. The bound is only a sanity check (ms, not s; not stuck): a tight
    # one (it was 2 s) flakes on a loaded 2-core runner.
    assert latency and 0 < latency["p50"] <= latency["p95"] < 60_000, online_after[-1:]
