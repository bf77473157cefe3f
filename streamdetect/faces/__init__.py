"""Faces: detect (MediaPipe), track (ids across frames), crop (one aligned crop for serving and training)."""
