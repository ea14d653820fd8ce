"""The inference runner: every onnxruntime call of the service goes through it.

Its unit of work is one model and a dict of input tensor name -> numpy array, batch axis first;
it answers with that model's output arrays for the caller's rows alone. With batching on,
requests for the same model that wait at the same time run as one call: every input is
concatenated along the batch axis, the outputs are split back by row ranges, and an error fails
exactly the requests of its batch.

Work is bounded: at most `concurrency` calls run at once, at most `max_queued` requests wait for
one, and the next is refused at once (`OverloadedError`: 503 with Retry-After) instead of piling
up. A batch of at most `inline_max_rows` rows runs on the event loop, where it costs less than a
hop to a thread; larger ones run in the runner's own threads, so the loop keeps reading and
parsing other requests meanwhile.

`start()` and `aclose()` follow the app's lifespan: closing refuses new work, finishes every
queued and running request, then stops the threads. The runner keeps a model only while one of
its requests waits or runs (a reloaded model is never pinned), and reports every batch to one
optional `observer` (the place for metrics).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Protocol

import numpy as np

from service.errors import OverloadedError, ShuttingDownError

logger = logging.getLogger(__name__)

Tensors = dict[str, np.ndarray]


class BatchModel(Protocol):
    """What the runner runs: `ServedModel` is one."""

    def run(self, inputs: Mapping[str, np.ndarray]) -> Tensors: ...


@dataclass(frozen=True)
class RunnerOptions:
    batching: bool = True
    max_batch_size: int = 256  # rows; a larger request runs alone
    max_batch_delay_s: float = 0.0
    concurrency: int = 1
    max_queued: int = 256
    inline_max_rows: int = 16


@dataclass(frozen=True)
class BatchReport:
    """One onnxruntime call, as the observer sees it once it is done."""

    model: BatchModel
    requests: int
    rows: int
    seconds: float  # the call alone, without queueing
    inline: bool  # ran on the event loop
    queued: int  # requests still waiting when it started
    running: int  # calls running when it started, itself included
    error: BaseException | None
    outputs: Tensors | None = None  # the whole batch's outputs, when it succeeded


BatchObserver = Callable[[BatchReport], None]


class _Job:
    __slots__ = ("future", "inputs", "key", "model", "rows")

    def __init__(
        self, model: BatchModel, inputs: Mapping[str, np.ndarray], future: asyncio.Future[Tensors]
    ) -> None:
        self.model = model
        self.inputs = inputs
        self.future = future
        # Requests can share a call when they have the same inputs, dtypes and row shapes.
        key = []
        rows: int | None = None
        for name, array in inputs.items():
            shape = array.shape
            if not shape or (rows is not None and shape[0] != rows):
                shapes = {name: array.shape for name, array in inputs.items()}
                raise ValueError(f"every input needs the same batch axis first; got {shapes}")
            rows = shape[0]
            key.append((name, array.dtype.str, shape[1:]))
        if rows is None:
            raise ValueError("a request needs at least one input")
        self.rows: int = rows
        self.key = tuple(key)


class InferenceRunner:
    def __init__(
        self, options: RunnerOptions | None = None, observer: BatchObserver | None = None
    ) -> None:
        self.options = options or RunnerOptions()
        self.observer = observer
        self._pending: deque[_Job] = deque()
        self._pending_rows = 0
        self._running = 0
        self._dispatch: asyncio.Handle | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle: asyncio.Event | None = None
        self._closing = False
        self._debug = False

    @property
    def queued(self) -> int:
        """Requests waiting for an inference slot."""
        return len(self._pending)

    @property
    def running(self) -> int:
        """onnxruntime calls running now."""
        return self._running

    async def start(self) -> None:
        """Start taking work (the app's start-up calls it)."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                self.options.concurrency, thread_name_prefix="inference"
            )
        self._loop = asyncio.get_running_loop()
        self._idle = asyncio.Event()
        self._debug = logger.isEnabledFor(logging.DEBUG)
        self._closing = False

    async def aclose(self) -> None:
        """Refuse new work, finish every queued and running request, stop the threads."""
        self._closing = True
        if self._idle is not None:
            while self._pending or self._running:
                self._idle.clear()
                await self._idle.wait()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def run(self, model: BatchModel, inputs: Mapping[str, np.ndarray]) -> Tensors:
        """`model`'s outputs for `inputs` (each array: this request's rows, batch axis first)."""
        if self._closing:
            raise ShuttingDownError(
                "the server is shutting down and takes no new requests; retry in a moment "
                "(another replica, or this one once it has restarted, will answer)"
            )
        if self._loop is None or self._executor is None:
            raise RuntimeError("the inference runner is not started: call start() first")
        if len(self._pending) >= self.options.max_queued:
            raise OverloadedError(
                f"the server is at capacity: {len(self._pending)} requests are already waiting "
                "for an inference; retry shortly (the server's limit is "
                "MMOE_MAX_QUEUED_REQUESTS)",
                {"max_queued_requests": self.options.max_queued},
            )
        job = _Job(model, inputs, self._loop.create_future())
        self._pending.append(job)
        self._pending_rows += job.rows
        self._schedule()
        return await job.future

    def _schedule(self) -> None:
        """Arrange a dispatch once the requests that are ready now have queued."""
        assert self._loop is not None
        options = self.options
        if not self._pending or self._running >= options.concurrency:
            return
        full = self._pending_rows >= options.max_batch_size
        if self._dispatch is not None:
            if full and isinstance(self._dispatch, asyncio.TimerHandle):
                self._dispatch.cancel()  # no need to wait for more rows
            else:
                return
        if options.batching and options.max_batch_delay_s > 0 and not full:
            self._dispatch = self._loop.call_later(options.max_batch_delay_s, self._dispatch_now)
        else:
            self._dispatch = self._loop.call_soon(self._dispatch_now)

    def _dispatch_now(self) -> None:
        self._dispatch = None
        while self._pending and self._running < self.options.concurrency:
            batch = self._take_batch()
            if batch:
                self._start(batch)
        self._note_if_idle()

    def _note_if_idle(self) -> None:
        if not self._pending and not self._running and self._idle is not None:
            self._idle.set()

    def _take_batch(self) -> list[_Job]:
        """The oldest waiting request, and (batching on) every waiting one that fits with it."""
        pending = self._pending
        first = pending.popleft()
        self._pending_rows -= first.rows
        if first.future.done():  # its caller is gone
            return []
        batch = [first]
        if not self.options.batching:
            return batch
        rows, limit = first.rows, self.options.max_batch_size
        left: deque[_Job] = deque()
        while pending and rows < limit:
            job = pending.popleft()
            if job.future.done():
                self._pending_rows -= job.rows
            elif job.model is first.model and job.key == first.key and rows + job.rows <= limit:
                self._pending_rows -= job.rows
                rows += job.rows
                batch.append(job)
            else:
                left.append(job)
        left.extend(pending)
        self._pending = left
        return batch

    def _start(self, batch: list[_Job]) -> None:
        assert self._loop is not None and self._executor is not None
        self._running += 1
        model = batch[0].model
        if len(batch) == 1:
            inputs: Mapping[str, np.ndarray] = batch[0].inputs
        else:
            inputs = {
                name: np.concatenate([job.inputs[name] for job in batch])
                for name in batch[0].inputs
            }
        rows = sum(job.rows for job in batch)
        context = (len(self._pending), self._running)
        if rows <= self.options.inline_max_rows:
            outputs, seconds, error = _timed_run(model, inputs)
            self._finish(batch, rows, outputs, seconds, error, True, context)
            return
        call = self._loop.run_in_executor(self._executor, _timed_run, model, inputs)
        call.add_done_callback(partial(self._thread_done, batch, rows, context))

    def _thread_done(
        self,
        batch: list[_Job],
        rows: int,
        context: tuple[int, int],
        call: asyncio.Future[tuple[Tensors | None, float, BaseException | None]],
    ) -> None:
        outputs, seconds, error = call.result()
        self._finish(batch, rows, outputs, seconds, error, False, context)

    def _finish(
        self,
        batch: list[_Job],
        rows: int,
        outputs: Tensors | None,
        seconds: float,
        error: BaseException | None,
        inline: bool,
        context: tuple[int, int],
    ) -> None:
        self._running -= 1
        if outputs is not None and error is None:
            wrong = {name: a.shape for name, a in outputs.items() if a.shape[:1] != (rows,)}
            if wrong:
                error = RuntimeError(f"a batch of {rows} rows gave outputs of shapes {wrong}")
        if error is not None:
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(error)
        elif len(batch) == 1:
            if not batch[0].future.done():
                batch[0].future.set_result(outputs)  # type: ignore[arg-type]
        else:
            assert outputs is not None
            start = 0
            for job in batch:
                stop = start + job.rows
                if not job.future.done():
                    job.future.set_result({name: a[start:stop] for name, a in outputs.items()})
                start = stop
        if self._debug:
            logger.debug(
                "one call: %d request(s), %d rows, %.0f us, %s",
                len(batch), rows, seconds * 1e6, "inline" if inline else "in a thread",
            )  # fmt: skip
        if self.observer is not None:
            report = BatchReport(
                batch[0].model, len(batch), rows, seconds, inline, *context, error,
                outputs if error is None else None,
            )  # fmt: skip
            try:
                self.observer(report)
            except Exception:
                logger.exception("the batch observer failed")
        self._note_if_idle()
        self._schedule()


def _timed_run(
    model: BatchModel, inputs: Mapping[str, np.ndarray]
) -> tuple[Tensors | None, float, BaseException | None]:
    started = time.perf_counter()
    try:
        outputs = model.run(inputs)
    except Exception as error:  # delivered to the batch's callers, not raised here
        return None, time.perf_counter() - started, error
    return outputs, time.perf_counter() - started, None
