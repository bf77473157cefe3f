"""The scorer: the model behind every stream group, batching faces from many groups into one call per graph.

A pool of plain Ray actors (async, one engine each). Each request is one processing round of one stream (its
usable faces, or its faces' recurrent states); requests that arrive while the engine is busy, or within
`wait_ms` of the first, are concatenated into one encoder / step call of at most `max_faces` rows (faces are
counted, not requests) and the results are split back. Stateless: (h, c) come in with each step request and go
back out, so any scorer can serve any face and a restarted one has nothing to restore.

Ray Serve's `@serve.batch` does the same gathering; a plain actor pool is used instead. Measured here (2 CPUs,
busy): `serve.run` of a batched deployment costs 5.7 s and 280 MiB more than Ray itself, and a handle call
13.4 ms, against ~1.25 ms for an actor call; a frame makes two calls (encode, step), so Serve would spend most of
a 33 ms frame in the hop. `EngineProxy` is what a group's Pipeline sees as its engine.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np

log = logging.getLogger(__name__)


class _Batcher:
    """Gathers (arrays..., future) requests and runs `fn` on their row-wise concatenation."""

    def __init__(self, fn, max_rows: int, wait_s: float, pool: ThreadPoolExecutor):
        self.fn, self.max_rows, self.wait_s, self.pool = fn, max_rows, wait_s, pool
        self.pending: list = []
        self.sizes: Counter = Counter()  # rows per call -> calls
        self.requests_per_call: Counter = Counter()
        self._wake: asyncio.Event | None = None

    async def submit(self, *arrays):
        if self._wake is None:  # created on the actor's event loop, on first use
            self._wake = asyncio.Event()
            asyncio.get_running_loop().create_task(self._run())
        future = asyncio.get_running_loop().create_future()
        self.pending.append((arrays, future))
        self._wake.set()
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self.pending:
                continue
            if self.wait_s > 0:
                await asyncio.sleep(self.wait_s)  # let other groups' requests join this call
            batch, rows = [], 0
            while self.pending and (not batch or rows + len(self.pending[0][0][0]) <= self.max_rows):
                item = self.pending.pop(0)
                batch.append(item)
                rows += len(item[0][0])
            if self.pending:
                self._wake.set()
            try:
                joined = [np.concatenate([a[i] for a, _ in batch]) for i in range(len(batch[0][0]))]
                outputs = await loop.run_in_executor(self.pool, self.fn, *joined)
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.sizes[rows] += 1
            self.requests_per_call[len(batch)] += 1
            start = 0
            for arrays, future in batch:
                n = len(arrays[0])
                if not future.done():
                    future.set_result(tuple(o[start:start + n] for o in outputs))
                start += n


class Scorer:
    """Ray actor (see `scorer_actor`): one engine, two batchers (encoder graph, step graph)."""

    def __init__(self, model: str | None = None, backend: str = "onnxruntime", max_faces: int = 64,
                 wait_ms: float = 2.0):
        from streamdetect.loading import load_engine
        from streamdetect.service import default_model

        self.engine = load_engine(model or default_model(), backend=backend)
        pool = ThreadPoolExecutor(1, thread_name_prefix="engine")  # one engine call at a time, in order
        wait = wait_ms / 1e3
        self.encoder = _Batcher(lambda crops: (self.engine.encode(crops),), max_faces, wait, pool)
        self.stepper = _Batcher(self._step, max_faces * 2, wait, pool)  # two staggered states per face
        self.started = time.time()

    def _step(self, features, h, c):
        p, (h, c) = self.engine.step(features, (h, c))
        return p, h, c

    def card(self) -> str:
        return self.engine.card.to_json()

    def describe(self) -> str:
        return repr(self.engine)

    async def encode(self, crops: np.ndarray) -> np.ndarray:
        return (await self.encoder.submit(crops))[0]

    async def step(self, features: np.ndarray, h: np.ndarray, c: np.ndarray):
        return await self.stepper.submit(features, h, c)

    def stats(self) -> dict:
        def summary(b: _Batcher) -> dict:
            calls = sum(b.sizes.values())
            rows = sum(k * v for k, v in b.sizes.items())
            return {"calls": calls, "rows": rows, "mean_rows": round(rows / calls, 2) if calls else 0.0,
                    "max_rows": max(b.sizes, default=0),
                    "max_requests": max(b.requests_per_call, default=0),
                    "mean_requests": round(sum(k * v for k, v in b.requests_per_call.items()) / calls, 2) if calls else 0.0}

        return {"encode": summary(self.encoder), "step": summary(self.stepper), "engine": repr(self.engine)}


def scorer_actor():
    import ray

    return ray.remote(Scorer)


def scorer_name(i: int) -> str:
    return f"sd-scorer-{i}"


class EngineProxy:
    """What a stream group's Pipeline calls as its engine: the same encode/step, answered by a scorer actor.

    One scorer per stream (by a hash of its name), so a pool spreads streams while each call still meets the
    other streams' calls at the same scorer. A failed or lost scorer raises here, and the Pipeline reports that
    round's scores as an `error` message, as it does for a failed local model call.
    """

    name = "cluster"
    on_gpu = False

    def __init__(self, card, scorers: list, stream: str, timeout_s: float = 10.0):
        if not scorers:
            raise ValueError("no scorer: start the cluster (streamdetect cluster up) first")
        self.card, self.timeout = card, timeout_s
        self.scorer = scorers[zlib.crc32(stream.encode()) % len(scorers)]
        self.device = f"scorer pool ({len(scorers)})"

    def encode(self, crops: np.ndarray) -> np.ndarray:
        import ray

        return ray.get(self.scorer.encode.remote(np.ascontiguousarray(crops)), timeout=self.timeout)

    def step(self, features: np.ndarray, state=None):
        import ray

        features = np.ascontiguousarray(features, dtype=np.float32)
        if state is None:
            h = np.zeros((len(features), self.card.config.hidden_size), np.float32)
            state = (h, h.copy())
        p, h, c = ray.get(self.scorer.step.remote(features, *state), timeout=self.timeout)
        return p, (h, c)

    def close(self) -> None:
        pass
