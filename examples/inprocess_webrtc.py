"""In-process detection for WebRTC apps: hand decoded frames (numpy RGB) straight to the pipeline.

A WebRTC server (aiortc, LiveKit agents) already has decoded frames in Python, so it needs no WebSocket
service and no re-encoding: a PushSource takes the frames, the pipeline scores every face, and the messages
(scores, alert, status, track_end: the same objects the service sends) arrive in a callback.

    python examples/inprocess_webrtc.py [VIDEO]

plays VIDEO (default: the bundled sample) through aiortc's MediaPlayer when aiortc is installed
(`pip install aiortc`), else decodes it with PyAV; either way the frames go in through `push()`.

In an aiortc server:

    @pc.on("track")
    def on_track(track):
        if track.kind == "video":
            asyncio.ensure_future(feed(aiortc_frames(track), source))

With LiveKit (`livekit.rtc`), per subscribed video track:

    async for event in rtc.VideoStream(track):
        f = event.frame.convert(rtc.VideoBufferType.RGB24)
        source.push(np.frombuffer(f.data, np.uint8).reshape(f.height, f.width, 3), event.timestamp_us / 1e6)
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import AsyncIterator, Callable

import numpy as np

from streamdetect.config import ServiceConfig
from streamdetect.sources.push import PushSource

Frames = AsyncIterator[tuple[np.ndarray, "float | None"]]  # (H, W, 3) uint8 RGB, pts in seconds


def start_detection(on_message: Callable, engine=None, detector=None, name: str = "webrtc",
                    config: ServiceConfig | None = None):
    """Start a pipeline fed by a PushSource; `on_message(message)` is called from the processing thread."""
    from streamdetect.pipeline import Pipeline
    from streamdetect.service import load_runtime

    config = config or ServiceConfig()
    engine, detector = load_runtime(config, engine, detector)  # the default model unless given (cached export)
    source = PushSource(name)
    pipeline = Pipeline(config, engine, detector, on_message, sources=[source]).start()
    return pipeline, source


async def feed(frames: Frames, source: PushSource) -> None:
    """Push every frame of a track; end the stream when the track ends."""
    async for rgb, pts in frames:
        source.push(rgb, pts)  # never blocks: the live policy keeps only the newest frame
    source.end()


async def aiortc_frames(track) -> Frames:
    """An aiortc MediaStreamTrack (remote peer, MediaPlayer) as RGB frames."""
    from aiortc.mediastreams import MediaStreamError  # imported here: aiortc is optional

    while True:
        try:
            frame = await track.recv()  # an av.VideoFrame
        except MediaStreamError:
            return
        yield frame.to_ndarray(format="rgb24"), float(frame.time) if frame.time is not None else None


async def pyav_frames(path: str) -> Frames:
    """Without aiortc: the file decoded by PyAV, paced to real time like a call."""
    import av

    start = time.monotonic()
    with av.open(path) as container:
        for frame in container.decode(video=0):
            if frame.time is not None:
                await asyncio.sleep(max(0.0, start + frame.time - time.monotonic()))
            yield frame.to_ndarray(format="rgb24"), frame.time


def print_message(message) -> None:
    data = message.to_dict()
    if data["type"] == "alert":
        print(f"ALERT {data['stream']} face #{data['track']}: {data['previous']} -> {data['verdict']} "
              f"(confidence {data['confidence']:.2f})", flush=True)
    elif data["type"] == "scores" and data["faces"]:
        faces = ", ".join(f"#{f['track']} {f['verdict']} {f['confidence'] or 0:.2f}" for f in data["faces"])
        print(f"frame {data['frame']}: {faces}", flush=True)


async def main(video: str) -> None:
    pipeline, source = start_detection(print_message)
    try:
        from aiortc.contrib.media import MediaPlayer

        frames = aiortc_frames(MediaPlayer(video).video)
    except ImportError:
        print("aiortc is not installed: decoding with PyAV instead", file=sys.stderr)
        frames = pyav_frames(video)
    try:
        await feed(frames, source)
        await asyncio.to_thread(pipeline.wait, 10)  # let the last frames through
    finally:
        await asyncio.to_thread(pipeline.stop)
        pipeline.detector.close()


if __name__ == "__main__":
    from streamdetect.service import sample_clip

    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else str(sample_clip())))
