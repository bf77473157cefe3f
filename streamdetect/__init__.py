"""StreamDetect: real-time deepfake face detection for live video."""

__version__ = "0.1.0"
