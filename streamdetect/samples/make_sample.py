"""Generate ``sample.mp4``, the bundled demo clip, from one public-domain photograph.

The source is ``astronaut.png`` from scikit-image's sample data: NASA's portrait of astronaut
Eileen Collins (public domain; see README.md in this folder). The still is turned into a 12 s,
1280x720, 30 fps H.264 clip by a virtual camera that slowly zooms, pans and rolls over it, with small
brightness changes. In the middle the camera tilts down to the space suit for about a second so
the face leaves the frame, for testing "no face" handling.

    python -m streamdetect.samples.make_sample --source /path/to/astronaut.png \
        --out streamdetect/samples/sample.mp4

Needs only numpy, OpenCV (cv2) and PyAV with an H.264 encoder (libx264; libopenh264 as a fallback).
scikit-image itself is not needed beyond supplying the PNG. If ``--source`` is left out, the PNG is
looked up inside an installed scikit-image without importing it.

The camera path is fixed and the script has no randomness, so the frames are reproducible; the
encoded bytes can still differ between x264 builds.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import math
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

WIDTH, HEIGHT = 1280, 720
FPS = 30
DURATION_S = 12.0
N_FRAMES = int(round(DURATION_S * FPS))
GOP = 2 * FPS  # a keyframe every 2 s
CRF = 28
SHUTTER = 0.5  # exposure as a fraction of the frame interval (180-degree shutter)

# SHA-256 of skimage/data/astronaut.png as shipped in scikit-image 0.26.0 (512x512 RGB).
ASTRONAUT_SHA256 = "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5"

# Face box in source-image pixels (x0, y0, x1, y1): MediaPipe full-range detector on the 512x512 PNG
# gives x=173, y=67, w=h=103. Used only to describe where the face is in each frame.
SOURCE_FACE_BOX = (173.0, 67.0, 276.0, 170.0)

# The deliberate "no face" part of the clip: the camera starts tilting away at AWAY_START_S and is
# back on the face at AWAY_END_S. The face is entirely outside the frame for about 1 s within it;
# `expected_face_box()` says exactly which frames.
AWAY_START_S = 5.0
AWAY_END_S = 7.0


@dataclass(frozen=True)
class Key:
    t: float  # seconds
    cx: float  # camera centre, source pixels
    cy: float
    zoom: float  # output pixels per source pixel
    roll: float  # degrees, counter-clockwise


# Camera keyframes. The face (about 103 source px tall) is ~1.6x..3.6x => roughly 165..370 output px.
KEYS = (
    Key(0.0, 228.0, 150.0, 2.00, 0.0),
    Key(2.2, 250.0, 225.0, 1.62, -2.0),  # zoomed out: the whole photo, face ~165 px
    Key(4.2, 222.0, 132.0, 3.60, 2.5),  # close-up, face ~370 px
    Key(AWAY_START_S, 226.0, 140.0, 3.40, 1.5),
    Key(5.6, 244.0, 392.0, 3.60, 0.5),  # tilted down to the space suit: no face in view
    Key(6.4, 240.0, 400.0, 3.50, -0.5),
    Key(AWAY_END_S, 226.0, 142.0, 2.60, 1.0),
    Key(9.0, 206.0, 126.0, 3.30, -3.0),
    Key(10.6, 240.0, 172.0, 1.90, 1.5),
    Key(DURATION_S, 228.0, 150.0, 2.30, 0.0),
)


def _smoothstep(u: float) -> float:
    return u * u * (3.0 - 2.0 * u)


def camera(t: float) -> tuple[float, float, float, float]:
    """(cx, cy, zoom, roll_deg) at time t: eased keyframe interpolation plus a slow hand-held sway."""
    t = min(max(t, 0.0), DURATION_S)
    for a, b in zip(KEYS, KEYS[1:]):
        if t <= b.t:
            break
    u = _smoothstep((t - a.t) / (b.t - a.t))
    cx = a.cx + (b.cx - a.cx) * u
    cy = a.cy + (b.cy - a.cy) * u
    zoom = math.exp(math.log(a.zoom) + (math.log(b.zoom) - math.log(a.zoom)) * u)
    roll = a.roll + (b.roll - a.roll) * u
    # Gentle sway so the shot never sits perfectly still.
    cx += 3.0 * math.sin(2 * math.pi * t / 3.7)
    cy += 2.0 * math.sin(2 * math.pi * t / 2.9 + 1.0)
    roll += 0.8 * math.sin(2 * math.pi * t / 4.3)
    return cx, cy, zoom, roll


def brightness(t: float) -> float:
    """Multiplicative exposure change, within about +-8 %."""
    return 1.0 + 0.06 * math.sin(2 * math.pi * t / 5.0) + 0.02 * math.sin(2 * math.pi * t / 1.7)


def source_to_frame(t: float) -> np.ndarray:
    """2x3 affine matrix mapping source pixel coordinates to output frame coordinates at time t."""
    cx, cy, zoom, roll = camera(t)
    a = math.radians(roll)
    c, s = zoom * math.cos(a), zoom * math.sin(a)
    # Rotate and scale about the camera centre, then put the camera centre at the frame centre
    # (OpenCV's warpAffine treats integer coordinates as pixel centres on both sides).
    ox, oy = (WIDTH - 1) / 2.0, (HEIGHT - 1) / 2.0
    return np.array(
        [[c, s, ox - c * cx - s * cy], [-s, c, oy + s * cx - c * cy]],
        dtype=np.float64,
    )


def _face_corners(frame_index: int) -> np.ndarray:
    """The four corners of SOURCE_FACE_BOX in frame pixels at this frame (4x2)."""
    x0, y0, x1, y1 = SOURCE_FACE_BOX
    pts = np.array([[x0, y0, 1], [x1, y0, 1], [x1, y1, 1], [x0, y1, 1]], dtype=np.float64)
    return pts @ source_to_frame(frame_index / FPS).T


def expected_face_box(frame_index: int) -> tuple[float, float, float, float] | None:
    """Axis-aligned frame-pixel box (x0, y0, x1, y1) around the face at this frame, clipped to the
    frame; None when the face is entirely outside it. Derived from the camera path, not detected."""
    q = _face_corners(frame_index)
    x0, y0 = np.maximum(q.min(axis=0), 0.0)
    x1, y1 = np.minimum(q.max(axis=0), [WIDTH - 1.0, HEIGHT - 1.0])
    if x0 >= x1 or y0 >= y1:
        return None
    return (float(x0), float(y0), float(x1), float(y1))


def face_fully_in_frame(frame_index: int) -> bool:
    q = _face_corners(frame_index)
    return bool((q >= 0).all() and (q[:, 0] <= WIDTH - 1).all() and (q[:, 1] <= HEIGHT - 1).all())


class Renderer:
    """Renders frames of the virtual camera move over one RGB photograph."""

    def __init__(self, photo_rgb: np.ndarray):
        import cv2

        self._cv2 = cv2
        if photo_rgb.ndim != 3 or photo_rgb.shape[2] != 3 or photo_rgb.dtype != np.uint8:
            raise ValueError("expected an HxWx3 uint8 RGB image")
        self.photo = np.ascontiguousarray(photo_rgb)
        h, w = photo_rgb.shape[:2]
        # Out-of-photo areas (only when zoomed out) show a heavily blurred, darkened mirror
        # extension of the photo, like an out-of-focus surround, instead of black bars.
        self.pad = pad = max(h, w) // 2
        padded = cv2.copyMakeBorder(self.photo, pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
        self.backdrop = cv2.GaussianBlur(padded, (0, 0), sigmaX=12, borderType=cv2.BORDER_REFLECT_101)
        # Feathered coverage mask, so the photo's edge blends into the backdrop.
        mask = np.zeros((h, w), np.float32)
        mask[4:-4, 4:-4] = 1.0
        self.mask = cv2.GaussianBlur(mask, (0, 0), sigmaX=3.0)

    def _render(self, t: float) -> np.ndarray:
        cv2 = self._cv2
        m = source_to_frame(t)
        size = (WIDTH, HEIGHT)
        fg = cv2.warpAffine(self.photo, m, size, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT)
        m_bg = m.copy()
        m_bg[:, 2] -= m[:, :2].sum(axis=1) * self.pad  # the backdrop is offset by the padding
        bg = cv2.warpAffine(self.backdrop, m_bg, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        alpha = cv2.warpAffine(self.mask, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        alpha = alpha[:, :, None]
        out = fg.astype(np.float32) * alpha + bg.astype(np.float32) * (0.75 * (1.0 - alpha))
        return out * brightness(t)

    def frame(self, i: int) -> np.ndarray:
        """Frame i as HxWx3 uint8 RGB.

        Motion blur as from a 180-degree shutter: when the image moves more than a few pixels
        during the half-frame exposure (the quick tilt away and back), several sub-frame renders
        spread over the exposure are averaged.
        """
        t = i / FPS
        shutter = SHUTTER / FPS
        n = shutter_samples(t, shutter)
        if n == 1:
            out = self._render(t)
        else:
            out = np.zeros((HEIGHT, WIDTH, 3), np.float32)
            for k in range(n):
                out += self._render(t + (k / (n - 1) - 0.5) * shutter)
            out /= n
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def shutter_samples(t: float, shutter: float) -> int:
    """How many sub-frame renders give a smooth blur: one per ~3 px of the largest image motion."""
    import cv2

    corners = np.array([[0, 0], [WIDTH - 1, 0], [0, HEIGHT - 1], [WIDTH - 1, HEIGHT - 1], [WIDTH / 2, HEIGHT / 2]])
    inv = cv2.invertAffineTransform(source_to_frame(t - shutter / 2))
    src = np.hstack([corners, np.ones((len(corners), 1))]) @ inv.T
    moved = np.hstack([src, np.ones((len(src), 1))]) @ source_to_frame(t + shutter / 2).T
    motion = float(np.max(np.hypot(*(moved - corners).T)))
    return 1 if motion < 3.0 else min(int(math.ceil(motion / 3.0)) + 1, 16)


def find_skimage_astronaut() -> Path | None:
    """Path of astronaut.png inside an installed scikit-image, found without importing it."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        p = Path(root) / "data" / "astronaut.png"
        if p.is_file():
            return p
    return None


def load_rgb(path: Path) -> np.ndarray:
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SystemExit(f"cannot read image: {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _open_h264_stream(container, crf: int, preset: str):
    import av
    from av.video.reformatter import ColorPrimaries, ColorRange, ColorTrc, Colorspace

    available = av.codecs_available
    if "libx264" in available:
        stream = container.add_stream("libx264", rate=FPS)
        stream.options = {
            "crf": str(crf),
            "preset": preset,
            "profile": "high",
            "x264-params": f"keyint={GOP}:min-keyint={GOP}:scenecut=0",
        }
    elif "libopenh264" in available:
        stream = container.add_stream("libopenh264", rate=FPS)
        stream.bit_rate = 1_500_000
        stream.options = {"rc_mode": "quality"}
    else:
        raise SystemExit("no H.264 encoder (libx264 or libopenh264) in this PyAV build")
    stream.width, stream.height = WIDTH, HEIGHT
    stream.pix_fmt = "yuv420p"
    stream.gop_size = GOP
    # HD video is BT.709, limited range; say so in the stream so players need not guess.
    cc = stream.codec_context
    cc.colorspace = Colorspace.ITU709
    cc.color_range = ColorRange.MPEG
    cc.color_primaries = ColorPrimaries.BT709
    cc.color_trc = ColorTrc.BT709
    cc.time_base = Fraction(1, FPS)
    return stream


def write_clip(photo_rgb: np.ndarray, out: Path, crf: int = CRF, preset: str = "slow") -> None:
    import av

    renderer = Renderer(photo_rgb)
    out.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(out), mode="w", options={"movflags": "+faststart"}) as container:
        container.metadata["title"] = "streamdetect sample clip"
        container.metadata["comment"] = (
            "Animated from NASA's public-domain portrait of astronaut Eileen Collins "
            "(scikit-image astronaut.png); see streamdetect/samples/README.md"
        )
        stream = _open_h264_stream(container, crf, preset)
        for i in range(N_FRAMES):
            vf = av.VideoFrame.from_ndarray(renderer.frame(i), format="rgb24").reformat(
                format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG", interpolation="BICUBIC"
            )
            vf.pts = i
            vf.time_base = Fraction(1, FPS)
            for packet in stream.encode(vf):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--source",
        type=Path,
        help="astronaut.png from scikit-image (default: look for it in an installed scikit-image)",
    )
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("sample.mp4"))
    ap.add_argument("--crf", type=int, default=CRF)
    ap.add_argument("--preset", default="slow")
    args = ap.parse_args(argv)

    source = args.source or find_skimage_astronaut()
    if source is None:
        ap.error("--source not given and scikit-image's astronaut.png was not found")
    digest = _sha256(source)
    if digest != ASTRONAUT_SHA256:
        print(
            f"warning: {source} has SHA-256 {digest}, not that of scikit-image 0.26.0's astronaut.png; "
            "the camera path assumes that 512x512 image",
            file=sys.stderr,
        )
    photo = load_rgb(source)
    write_clip(photo, args.out, crf=args.crf, preset=args.preset)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes, {N_FRAMES} frames, {WIDTH}x{HEIGHT} @ {FPS} fps)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
