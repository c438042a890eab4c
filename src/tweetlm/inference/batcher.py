"""Request batching for the engine (layer L3, inference): a bounded asyncio queue and one worker.

Concurrent requests wait in a queue of at most ``queue_size``; a request arriving at a full queue is refused at
once with ``QueueFull`` (the server answers 503) instead of waiting without bound. The worker takes up to
``max_batch`` waiting requests, runs them as one ``Engine.generate`` batch in a worker thread (so the event loop
keeps serving), and streams each row's text back to its request. Static batching: a batch runs to the end
before the next starts (continuous batching is vLLM's job at scale; see the HF export).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from tweetlm.inference.engine import Completion, Engine, SamplingParams


class QueueFull(Exception):
    """The request queue is full; retry later."""


@dataclass
class _Job:
    prompt: str | list[dict]  # a post's beginning, or a conversation (Engine.generate)
    params: SamplingParams
    out: asyncio.Queue = field(default_factory=asyncio.Queue)


class Batcher:
    """Serve ``Engine`` requests in batches. Start with ``start()`` inside a running event loop."""

    def __init__(self, engine: Engine, max_batch: int = 8, queue_size: int = 32) -> None:
        if max_batch < 1 or queue_size < 1:
            raise ValueError("max_batch and queue_size must be >= 1")
        self.engine = engine
        self.max_batch = max_batch
        self.queue: asyncio.Queue[_Job] = asyncio.Queue(maxsize=queue_size)
        self._task: asyncio.Task | None = None
        self.batches_run = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._worker())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    def submit(self, prompt: str | list[dict], params: SamplingParams) -> _Job:
        """Queue one request; raises ``QueueFull`` when ``queue_size`` requests already wait."""
        job = _Job(prompt, params)
        try:
            self.queue.put_nowait(job)
        except asyncio.QueueFull:
            raise QueueFull(f"{self.queue.maxsize} requests are already waiting") from None
        return job

    async def stream(self, job: _Job) -> AsyncIterator[str | Completion]:
        """Text deltas of ``job`` as they are produced, then its ``Completion``; re-raises a generation error."""
        while True:
            item = await job.out.get()
            if isinstance(item, BaseException):
                raise item
            yield item
            if isinstance(item, Completion):
                return

    async def result(self, job: _Job) -> Completion:
        """Wait for ``job``'s ``Completion`` (its streamed deltas are skipped)."""
        async for item in self.stream(job):
            if isinstance(item, Completion):
                return item
        raise RuntimeError("generation ended without a completion")  # pragma: no cover

    async def complete(self, prompt: str | list[dict], params: SamplingParams) -> Completion:
        """Submit and wait for the whole completion (raises ``QueueFull`` like ``submit``)."""
        return await self.result(self.submit(prompt, params))

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self.queue.get()]
            while len(jobs) < self.max_batch and not self.queue.empty():
                jobs.append(self.queue.get_nowait())

            def on_text(i: int, delta: str, jobs=jobs) -> None:
                loop.call_soon_threadsafe(jobs[i].out.put_nowait, delta)

            try:
                results = await asyncio.to_thread(
                    self.engine.generate, [j.prompt for j in jobs], [j.params for j in jobs], on_text
                )
                for j, r in zip(jobs, results):
                    j.out.put_nowait(r)
            except Exception as e:  # a failed batch fails its requests, never the worker
                for j in jobs:
                    j.out.put_nowait(e)
            self.batches_run += 1
