"""The live service: pipeline (threads) + bus + WebSocket server (asyncio), started and stopped together."""

from __future__ import annotations

import asyncio
import logging
from importlib.resources import files
from pathlib import Path

from streamdetect import __version__
from streamdetect.bus import Bus
from streamdetect.config import ServiceConfig, SourceConfig
from streamdetect.messages import Error, Hello
from streamdetect.pipeline import Pipeline
from streamdetect.server import WebSocketServer
from streamdetect.uploads import Uploads

log = logging.getLogger(__name__)


def sample_clip() -> Path:
    """The bundled, redistributable sample clip (see streamdetect/samples/README.md)."""
    return Path(str(files("streamdetect.samples") / "sample.mp4"))


def default_model() -> Path:
    """The bundled trained model (streamdetect/weights/README.md); every command uses it unless given another."""
    from streamdetect.weights import default_model_path

    path = default_model_path()
    if not path.is_file():
        raise FileNotFoundError(f"the bundled model {path} is missing (a broken install?); reinstall streamdetect "
                                f"or pass a model with --model / `model:` in the config")
    return path


def load_runtime(config: ServiceConfig, engine=None, detector=None):
    """Engine and face detector for a config (shared by `serve` and `scan`); given ones are kept."""
    from streamdetect.loading import load_engine
    from streamdetect.faces.detector import MediaPipeFaceDetector

    if engine is None:
        engine = load_engine(config.model or default_model(), backend=config.backend)
    if detector is None:
        fc = config.faces
        detector = MediaPipeFaceDetector(fc.model, fc.min_score, fc.tiles)
    return engine, detector


class Service:
    def __init__(self, config: ServiceConfig, engine=None, detector=None):
        if not config.sources:
            config = ServiceConfig(**{**config.__dict__, "sources": (SourceConfig(str(sample_clip()), "sample", realtime=True, loop=True),)})
        self.config = config
        self._runtime = (engine, detector)
        self._owns_detector = detector is None
        self.pipeline: Pipeline | None = None
        self.server: WebSocketServer | None = None
        self.port: int | None = None
        self._upload_detector = None  # uploads are scanned in their own thread: MediaPipe detectors are not shared
        self.bus = self.metrics = self.events = self.mqtt = None  # set by start()

    def scan_upload(self, path: Path, annotate: Path, progress) -> dict:
        """Scan an uploaded file with the live model (blocking; runs in a worker thread)."""
        import av

        from streamdetect.faces.detector import MediaPipeFaceDetector
        from streamdetect.scan import scan

        if self._upload_detector is None:
            fc = self.config.faces
            self._upload_detector = MediaPipeFaceDetector(fc.model, fc.min_score, fc.tiles)
        try:
            with av.open(str(path)) as c:
                total = c.streams.video[0].frames if c.streams.video else 0
        except av.error.FFmpegError:
            total = 0  # scan() reports the real problem
        done = [0]

        def tick(n: int) -> None:
            done[0] += n
            progress(done[0], max(total, done[0]))

        config = ServiceConfig(**{**self.config.__dict__, "sources": ()})
        return scan(path, config, self.pipeline.engine, self._upload_detector, annotate=annotate, progress=tick)

    def hello(self) -> str:
        card = self.pipeline.engine.card
        sc = self.config.scoring
        alert = sc.alert if sc.alert is not None else card.threshold  # the level faces alert at (TrackScorer's rule)
        model = {"name": card.name, "backbone": card.config.backbone, "input_size": card.config.input_size,
                 "threshold": card.threshold, "window": self.config.window,
                 "alert": round(alert, 4), "suspicious": round(max(0.0, alert - sc.suspicious_gap), 4)}
        return Hello(f"streamdetect {__version__}", [w.name for w in self.pipeline.workers], model).to_json()

    def health(self) -> dict:
        streams = {w.name: w.source.state.value for w in self.pipeline.workers}
        if self.pipeline.error is not None or not self.pipeline.running:
            return {"status": "error", "version": __version__, "streams": streams,
                    "error": f"processing stopped: {self.pipeline.error or 'not running'}"}
        return {"status": "ok", "version": __version__, "streams": streams}

    async def start(self) -> int:
        from streamdetect.outputs.metrics import Metrics
        from streamdetect.outputs.mqtt import MqttPublisher

        engine, detector = load_runtime(self.config, *self._runtime)
        bus = self.bus = Bus(asyncio.get_running_loop(), replay_size=self.config.events.replay)
        self.metrics = Metrics(bus) if self.config.server.metrics else None
        if self.metrics is not None:
            bus.add_sink(self.metrics)
            engine = self.metrics.wrap_engine(engine)  # model-call duration histograms
        self.events = None
        if self.config.events.enabled:
            from streamdetect.events.recorder import EventRecorder

            self.events = await asyncio.to_thread(EventRecorder, self.config.events,
                                                  lambda text: bus.publish(Error(text)))
            bus.add_sink(self.events)
            bus.recent_alerts.extend(self.events.store.recent_alerts(self.config.events.replay))  # survive restarts
        on_frame = (lambda frame, faces: self.events.on_frame(frame.stream, frame.rgb, faces)) if self.events else None
        self.pipeline = Pipeline(self.config, engine, detector, bus.publish, on_frame=on_frame)
        self.mqtt = None
        sc = self.config.server
        self.uploads = Uploads(self.scan_upload, int(sc.upload_max_mb * 1e6), sc.upload_dir)
        self.server = WebSocketServer(bus, self.hello, self.health, sc.host, sc.port, sc.token, self.uploads,
                                      metrics=self.metrics.render if self.metrics is not None else None,
                                      events=self.events)
        self.port = await self.server.start()
        if self.config.mqtt.host:  # after the server: a port in use must not leave a publisher thread behind
            self.mqtt = MqttPublisher(self.config.mqtt, [w.name for w in self.pipeline.workers])
            self.mqtt.start()
            bus.add_sink(self.mqtt)
        self.pipeline.start()
        return self.port

    async def stop(self) -> None:
        if self.pipeline is not None:
            await asyncio.to_thread(self.pipeline.stop)
            if self._owns_detector:
                self.pipeline.detector.close()
        if self.server is not None:
            await self.server.close()
            self.uploads.close()
        if self._upload_detector is not None:
            self._upload_detector.close()
        if self.events is not None:
            await asyncio.to_thread(self.events.close)  # everything queued is written before we exit
        if self.mqtt is not None:
            self.mqtt.close()
