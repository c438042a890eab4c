"""The engine behind an asyncio server (layer L3, inference): a bounded queue and one engine thread.

Requests are submitted from the event loop; a request arriving when ``queue_size`` requests already wait for a
slot is refused at once with ``QueueFull`` (the server answers 503) instead of waiting without bound. One
thread runs the engine's scheduler (``Engine.step``) while there is work, so the event loop keeps serving, and
hands each request's text back to its coroutine as it is produced.

Continuous batching (the default): a request joins the running batch at the next step and leaves it when it
ends (``Engine``). ``continuous=False`` is the static batching tweetlm had before, kept only to measure against
(``benchmarks/bench_serve.py``): up to ``max_batch`` waiting requests start together and the next ones wait
until every one of them has finished. A request whose client went away (``Job.cancel()``, called by the server
when a stream is closed or a client disconnects) leaves its slot at the next step.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from tweetlm.inference.engine import Completion, Engine, Request, SamplingParams


class QueueFull(Exception):
    """The request queue is full; retry later."""


@dataclass
class Job:
    """A submitted request as the event loop sees it: ``out`` receives text deltas, then the ``Completion`` or
    the exception that failed it."""

    prompt: str | list[dict]  # a post's beginning, or a conversation (Engine.generate)
    params: SamplingParams
    out: asyncio.Queue = field(default_factory=asyncio.Queue)
    request: Request | None = None
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True
        if self.request is not None:
            self.request.cancel()


class Batcher:
    """Serve ``Engine`` requests with continuous (or, for comparison, static) batching over the engine's
    ``max_batch`` slots. Start with ``start()`` inside a running event loop."""

    def __init__(self, engine: Engine, max_batch: int = 8, queue_size: int = 32, continuous: bool = True) -> None:
        if max_batch < 1 or queue_size < 1:
            raise ValueError("max_batch and queue_size must be >= 1")
        self.engine = engine
        engine.max_batch = max_batch
        self.max_batch = max_batch
        self.queue_size = queue_size
        self.continuous = continuous
        self._pending: deque[Job] = deque()  # submitted, not yet handed to the engine
        self._handing = 0  # taken from _pending and not yet in the engine (being encoded, outside the lock)
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stop = False
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def waiting(self) -> int:
        """Requests submitted and not yet in an engine slot."""
        return len(self._pending) + self._handing + self.engine.num_waiting

    def start(self) -> None:
        if self._thread is None:
            self._loop = asyncio.get_running_loop()
            self._stop = False
            self._thread = threading.Thread(target=self._run, name="tweetlm-engine", daemon=True)
            self._thread.start()

    async def stop(self) -> None:
        if self._thread is not None:
            with self._cond:
                self._stop = True
                self._cond.notify_all()
            await asyncio.to_thread(self._thread.join)
            self._thread = None

    def submit(self, prompt: str | list[dict], params: SamplingParams) -> Job:
        """Queue one request; raises ``QueueFull`` when ``queue_size`` requests already wait beyond the free
        slots (so a burst into an idle server is admitted up to ``max_batch + queue_size``)."""
        with self._cond:
            free = self.max_batch - self.engine.num_running
            if self.waiting - free >= self.queue_size:
                raise QueueFull(f"{self.queue_size} requests are already waiting")
            job = Job(prompt, params)
            self._pending.append(job)
            self._cond.notify_all()
        return job

    async def stream(self, job: Job) -> AsyncIterator[str | Completion]:
        """Text deltas of ``job`` as they are produced, then its ``Completion``; re-raises a generation error.
        Leaving early (a closed stream) cancels the request, freeing its slot."""
        finished = False
        try:
            while True:
                item = await job.out.get()
                if isinstance(item, BaseException):
                    finished = True
                    raise item
                if isinstance(item, Completion):
                    finished = True
                yield item
                if finished:
                    return
        finally:
            if not finished:
                job.cancel()

    async def result(self, job: Job) -> Completion:
        """Wait for ``job``'s ``Completion`` (its streamed deltas are skipped); cancelled if the wait is."""
        async for item in self.stream(job):
            if isinstance(item, Completion):
                return item
        raise RuntimeError("generation ended without a completion")  # pragma: no cover

    async def complete(self, prompt: str | list[dict], params: SamplingParams) -> Completion:
        """Submit and wait for the whole completion (raises ``QueueFull`` like ``submit``)."""
        return await self.result(self.submit(prompt, params))

    # ---- the engine thread ---------------------------------------------------------------------------------

    def _post(self, job: Job, item) -> None:
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(job.out.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            pass

    def _take(self) -> list[Job]:
        """Pending jobs to hand to the engine now (static batching: only when it is idle, ``max_batch`` at
        most). Called holding ``_cond``."""
        if not self.continuous and self.engine.has_work():
            return []
        n = len(self._pending) if self.continuous else min(self.max_batch, len(self._pending))
        self._handing += n
        return [self._pending.popleft() for _ in range(n)]

    def _hand_over(self, jobs: list[Job]) -> None:
        """Encode and queue ``jobs`` in the engine (outside the lock: a long prompt never blocks ``submit``).
        Each job counts as waiting (``_handing``) until it is in the engine, so a burst that arrives meanwhile
        is not admitted beyond the queue (seen in a test: 7 of a burst admitted to 2 slots + 4 waiting)."""
        for job in jobs:
            req = None
            try:
                if not job.cancelled:
                    req = self.engine.make_request(job.prompt, job.params, lambda d, job=job: self._post(job, d))
            except Exception as e:  # invalid prompt or params: this request fails alone
                self._post(job, e)
            with self._cond:
                self._handing -= 1
                if req is None:
                    continue
                job.request = req
                req.on_done = lambda r, job=job: self._done(job, r)
                if job.cancelled:
                    req.cancel()
                self.engine.add(req)

    def _done(self, job: Job, req: Request) -> None:
        """A request ended (in whichever thread stepped the engine: this one, or one calling ``generate``)."""
        if req.error is not None:
            self._post(job, req.error)
        elif req.finish_reason != "cancelled":
            self._post(job, req.completion())

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stop or self._pending or self.engine.has_work())
                if self._stop:
                    return
                jobs = self._take()
            self._hand_over(jobs)
            if self.engine.has_work():
                try:
                    self.engine.step()  # a row's failure fails that row alone (Request.error)
                except Exception as e:  # the step failed as a whole: its requests fail, this thread goes on
                    self.engine.fail_all(e)
