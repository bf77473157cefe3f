"""Service configuration: frozen dataclasses, loaded from YAML or built from CLI flags. Unknown keys are errors."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from streamdetect.errors import ConfigError
from streamdetect.scoring import ScoringConfig


@dataclass(frozen=True)
class SourceConfig:
    url: str
    name: str | None = None
    transport: str = "tcp"  # RTSP over tcp (default) or udp
    realtime: bool = False  # pace files to their timestamps, as if live
    loop: bool = False  # start a file again when it ends (demos)
    buffer: int | None = None  # frames buffered between decode and processing (default 1 live / 8 files)
    policy: str | None = None  # "drop_oldest" or "wait"; default: drop_oldest for live sources, wait for files


    def __post_init__(self):
        if self.policy not in (None, "drop_oldest", "wait"):
            raise ValueError(f"policy must be 'drop_oldest' or 'wait', got {self.policy!r}")
        if self.transport not in ("tcp", "udp"):
            raise ValueError(f"transport must be 'tcp' or 'udp', got {self.transport!r}")
        if self.buffer is not None and self.buffer < 1:
            raise ValueError(f"buffer must be at least 1 frame, got {self.buffer}")


@dataclass(frozen=True)
class FacesConfig:
    model: str = "full_range"  # or "short_range" (faces within ~2 m, video calls)
    min_score: float = 0.5
    detect_every: int = 3  # run the detector every k frames; the tracker predicts in between
    tiles: int | str = "auto"  # N x N tiled detection for small faces; auto: 2 for frames >= 720 px tall
    tile_every: int = 30  # each tile is looked at about every k frames: tiles only discover new small faces
    # (tracked small faces are looked for around their track at every detector run; see faces/stage.py)
    min_face_px: int = 40
    max_missed: int = 5  # detector runs a track may miss before it ends
    skip_steady: bool = True  # skip every other detector run while all faces are where the tracker predicts

    def __post_init__(self):
        if self.detect_every < 1 or self.tile_every < 1:
            raise ValueError("faces.detect_every and faces.tile_every must be >= 1")


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"  # loopback by default: exposing the service is a deliberate choice
    port: int = 8765
    token: str | None = None  # shared token; clients send "Authorization: Bearer T" or ?token=T
    scores_hz: float = 10.0  # per-stream rate of "scores" messages (0: every processed frame)
    status_interval_s: float = 1.0
    thumbnails: bool = True  # attach a JPEG of the face to alerts
    preview_hz: float = 2.0  # per-stream rate of downscaled annotated "preview" frames (0: none)
    preview_width: int = 480
    upload_max_mb: float = 200.0  # dashboard uploads: larger files are refused before any byte is stored
    upload_dir: str | None = None  # where uploads are stored while scanned (default: a private temp folder)
    metrics: bool = True  # Prometheus text format at /metrics (behind the token when one is set)

    def __post_init__(self):
        if self.token is not None and not self.token.strip():
            raise ValueError("server.token is empty: give a real token, or leave it out to disable auth")
        if self.preview_width < 16 or self.upload_max_mb <= 0 or self.scores_hz < 0 or self.preview_hz < 0:
            raise ValueError("server: preview_width must be >= 16, upload_max_mb > 0, scores_hz and preview_hz >= 0")


@dataclass(frozen=True)
class EventsConfig:
    """The event store: every suspicious/alert verdict and its track's end, with an evidence clip."""

    enabled: bool = True
    dir: str | None = None  # data folder (SQLite file, clips, thumbnails); default: $XDG_DATA_HOME/streamdetect
    database: str | None = None  # None: SQLite in `dir`; "postgresql://..." keeps the same schema in PostgreSQL
    clip_before_s: float = 5.0  # evidence clip: seconds before the alert ...
    clip_after_s: float = 5.0  # ... and after it
    clip_width: int = 640  # clips are downscaled to at most this width (decoded, annotated frames)
    clip_fps: float = 15.0  # frames kept for clips per stream and second (each costs a resize and a JPEG encode)
    max_age_days: float = 30.0  # retention: older events are deleted with their files
    max_disk_mb: float = 2000.0  # retention: oldest events go first when the folder grows past this
    replay: int = 50  # recent alerts a new WebSocket subscriber receives from the store
    retention_every_s: float = 60.0  # how often retention runs while the service runs

    def __post_init__(self):
        if self.clip_before_s < 0 or self.clip_after_s < 0 or self.clip_width < 16 or self.clip_fps <= 0:
            raise ValueError("events: clip_before_s and clip_after_s must be >= 0, clip_width >= 16, clip_fps > 0")
        if self.max_age_days <= 0 or self.max_disk_mb <= 0 or self.replay < 0 or self.retention_every_s <= 0:
            raise ValueError("events: max_age_days, max_disk_mb and retention_every_s must be > 0, replay >= 0")
        if self.database is not None and not self.database.startswith(("postgresql://", "postgres://")):
            raise ValueError(f"events.database must be a postgresql:// URL (or left out for SQLite), got {self.database!r}")


@dataclass(frozen=True)
class MqttConfig:
    """MQTT publishing of alerts and availability; off unless a broker host is given."""

    host: str | None = None
    port: int = 1883
    topic_prefix: str = "streamdetect"
    username: str | None = None
    password: str | None = None
    client_id: str = "streamdetect"

    def __post_init__(self):
        if not 1 <= self.port <= 65535:
            raise ValueError(f"mqtt.port must be 1..65535, got {self.port}")
        if not self.topic_prefix or any(c in self.topic_prefix for c in "#+"):
            raise ValueError(f"mqtt.topic_prefix must be a plain topic without wildcards, got {self.topic_prefix!r}")


@dataclass(frozen=True)
class ServiceConfig:
    sources: tuple[SourceConfig, ...] = ()
    model: str | None = None  # checkpoint or export directory; None: the default model
    backend: str = "auto"
    window: int = 20  # W: frames each score covers (the paper trains on 10..100)
    faces: FacesConfig = field(default_factory=FacesConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)

    def __post_init__(self):
        if not 2 <= self.window <= 300:
            raise ValueError(f"window must be between 2 and 300 frames, got {self.window}")
        names = [s.name for s in self.sources if s.name]
        if len(names) != len(set(names)):
            raise ValueError(f"source names must be unique, got {names}")


def load_config(path: str | Path) -> ServiceConfig:
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    return from_dict(ServiceConfig, data or {}, f"{path}: config")


def from_dict(cls, data, where: str = "config"):
    """Build a (nested) frozen dataclass from plain data, naming the exact key on any error."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(fields)}")
    kwargs = {}
    for key, value in data.items():
        kwargs[key] = _convert(hints[key], value, f"{where}.{key}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def _convert(hint, value, where):
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)
    if origin is tuple:  # tuple[X, ...]
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list")
        item = typing.get_args(hint)[0]
        return tuple(_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is not type(None):
                try:
                    return _convert(arg, value, where)
                except ConfigError:
                    continue
        raise ConfigError(f"{where}: {value!r} is not a valid {hint}")
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(hint, type) and not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value
