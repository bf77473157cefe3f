"""One short exception tree. Every message names the problem and the fix."""


class StreamDetectError(Exception):
    """Base of every error StreamDetect raises on purpose."""


class ModelError(StreamDetectError):
    """A model could not be built or loaded."""


class CheckpointError(ModelError):
    """A checkpoint file is missing, truncated, foreign or does not match its model card."""


class IncompatibleModelError(ModelError):
    """A model file was written by a newer or different StreamDetect format."""


class WeightsNotFoundError(ModelError):
    """Pretrained backbone weights were asked for but are not installed."""


class ExportError(StreamDetectError):
    """Export to ONNX or TensorRT failed."""


class ValidationError(ExportError):
    """An exported graph disagrees with torch; nothing was written."""


class EngineError(StreamDetectError):
    """An inference backend could not be loaded or run, or the device asked for is not there."""


class MissingDependencyError(EngineError):
    """An optional dependency is not installed; the message names the extra that provides it."""

    def __init__(self, package: str, extra: str, purpose: str):
        self.package, self.extra = package, extra
        super().__init__(
            f"{purpose} needs the Python package '{package}', which is not installed. "
            f"Install it with: pip install 'streamdetect[{extra}]'"
        )


class StreamError(StreamDetectError):
    """A video source failed."""


class UnsupportedSourceError(StreamError):
    """The source URL's scheme or form is not one StreamDetect can read."""


class SourceOpenError(StreamError):
    """The source could not be opened: missing file, not a video, unreachable host, refused stream."""


class ConfigError(StreamDetectError, ValueError):
    """A service or training configuration is invalid; the message names the key. Also a ValueError: a bad
    value is what it is."""


class DatasetError(StreamDetectError):
    """A dataset folder, manifest or video cannot be used for training or evaluation."""
