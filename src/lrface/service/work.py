"""Where the service's heavy work runs: two bounded thread pools, so that one slow request
cannot hold up the rest, and a time budget for every request.

Decoding, detecting and embedding an image (and whole videos) run on a pool, never on the event
loop. Images whose header declares more than ``heavy_pixels`` (and videos) go to the *heavy*
lane, everything else to the *light* lane; each lane has its own workers and a bounded queue,
so two large photos occupy the heavy lane while small probes keep being answered on the light
one. A request that cannot start within its lane's queue bound is refused at once (503); one
that takes longer than its budget is answered 503 when the budget runs out (a job not yet
started is dropped; one already running finishes in its worker, whose lane stays bounded).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class Busy(Exception):
    """The lane's queue is full, or the request ran past its budget; ``message`` says which."""

    def __init__(self, message: str):
        self.message = message
        super().__init__(message)


class Lane:
    """One pool of ``workers`` threads taking at most ``queue`` jobs beyond those running."""

    def __init__(self, name: str, workers: int, queue: int):
        self.name = name
        self.capacity = workers + queue
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix=f"lrface-{name}")
        self._held = 0
        self._lock = threading.Lock()

    async def run(self, job: Callable[[], T], budget: float) -> T:
        with self._lock:
            if self._held >= self.capacity:
                raise Busy(f"the server is busy ({self.name} requests queue full); retry later")
            self._held += 1
        try:
            job_future = self._pool.submit(job)
        except RuntimeError:  # shut down
            self._release()
            raise Busy("the server is shutting down") from None
        # released when the job ends, not when we stop waiting for it
        job_future.add_done_callback(lambda _: self._release())
        try:
            return await asyncio.wait_for(asyncio.wrap_future(job_future), budget)
        except TimeoutError:
            raise Busy(
                f"the request took longer than its time budget ({budget:g} s); retry later "
                "or send a smaller image"
            ) from None

    @property
    def held(self) -> int:
        """Jobs running or queued now."""
        with self._lock:
            return self._held

    def _release(self) -> None:
        with self._lock:
            self._held -= 1

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class WorkPool:
    """The light and heavy lanes (see the module docstring)."""

    def __init__(self, workers: int, heavy_workers: int = 1, queue: int = 32):
        self.light = Lane("light", workers, queue)
        self.heavy = Lane("heavy", heavy_workers, max(1, queue // 8))

    async def run(self, job: Callable[[], T], heavy: bool, budget: float) -> T:
        return await (self.heavy if heavy else self.light).run(job, budget)

    def close(self) -> None:
        self.light.close()
        self.heavy.close()
