"""Make docs/sbi_examples.png: self-blended fakes of the bundled public-domain sample face.

    python tools/sbi_examples.py [OUT.png]

Uses the same prepare step (MediaPipe detection, face mesh, align_crop) as training, on
streamdetect/samples/sample.mp4, so the figure shows exactly what training feeds the model.
"""

import sys
import tempfile
from importlib.resources import files
from pathlib import Path

import numpy as np

from streamdetect.training.prepare import PrepareConfig, prepare_dataset, read_manifest
from streamdetect.training.sbi import examples_grid


def main(out: str = "docs/sbi_examples.png") -> None:
    with tempfile.TemporaryDirectory() as tmp:
        real = Path(tmp, "data", "real")
        real.mkdir(parents=True)
        (real / "sample.mp4").symlink_to(Path(str(files("streamdetect.samples") / "sample.mp4")))
        prepare_dataset(real.parent, Path(tmp, "prepared"), config=PrepareConfig(frames=60, sampling="even", workers=1))
        folder = Path(read_manifest(Path(tmp, "prepared"))[0]["folder"])
        crops, marks = np.load(folder / "crops_112.npy"), np.load(folder / "landmarks.npy") * 112
        print(examples_grid(crops, marks, out, n=6, seed=3))


if __name__ == "__main__":
    main(*sys.argv[1:])
