"""Progress bars for the long training commands (prepare, fetch-manifest, train, evaluate).

One rule: `progress=False` hides the bar; `progress=True` shows it only when stderr is a terminal (tqdm's
disable=None), so logs and CI output get no bar spam. Every bar has a total, so it shows a count and an ETA.
"""

from __future__ import annotations

from typing import Iterable


def progress_bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str, unit: str,
                 enabled: bool = True, **options):
    """A tqdm bar over `iterable` (its len() is the total unless `total` is given) or a manual one (update())."""
    from tqdm import tqdm

    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=None if enabled else True, **options)
