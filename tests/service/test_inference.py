"""The inference runner: micro-batching, every caller's own rows, bounded work, its lifecycle.

The bundled model (a real ONNX file) answers; wrappers around it block, fail or count calls where
a test needs that. Scenarios run on a fresh event loop each; they advance it by loop iterations
(`until`), never by wall-clock sleeps.
"""

from __future__ import annotations

import asyncio
import gc
import shutil
import threading
import weakref
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import numpy as np
import pytest

from service.errors import OverloadedError, ShuttingDownError
from service.inference import BatchReport, InferenceRunner, RunnerOptions, Tensors
from service.model import ServedModel
from service.runtime import RuntimeOptions
from tests.support import bundled_version_dir

D = 100


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> ServedModel:
    directory = tmp_path_factory.mktemp("models") / "mmoe-synthetic" / "1"
    shutil.copytree(bundled_version_dir(), directory)
    return ServedModel.load(directory, RuntimeOptions("cpu", 1))


def features(seed: int, rows: int) -> dict[str, np.ndarray]:
    values = np.random.default_rng(seed).normal(0.0, 1.5, (rows, D)).astype(np.float32)
    return {"features": values}


class Recorder:
    """The runner's observer: every batch it reports."""

    def __init__(self) -> None:
        self.reports: list[BatchReport] = []

    def __call__(self, report: BatchReport) -> None:
        self.reports.append(report)


class BlockingModel:
    """The real model, but each call waits until the test releases it."""

    def __init__(self, model: ServedModel) -> None:
        self.model = model
        self.release = threading.Event()

    def run(self, inputs: Mapping[str, np.ndarray]) -> Tensors:
        assert self.release.wait(timeout=30), "the test never released the model"
        return self.model.run(inputs)


async def until(condition: Callable[[], bool], iterations: int = 1000) -> None:
    """Let the event loop run until `condition` holds (by loop iterations, not by time)."""
    for _ in range(iterations):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never held")


def run_scenario(scenario: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(scenario())


def assert_own_rows(answer: Tensors, model: ServedModel, inputs: dict[str, np.ndarray]) -> None:
    """The rows a caller got are the rows a call of its own gives (to float32 rounding: the
    kernels may round differently for another batch size)."""
    alone = model.run(inputs)
    assert answer.keys() == alone.keys()
    for name, expected in alone.items():
        assert answer[name].shape == expected.shape
        np.testing.assert_allclose(answer[name], expected, rtol=1e-6, atol=1e-6)


def test_concurrent_requests_run_as_one_call_and_each_gets_its_own_rows(
    model: ServedModel,
) -> None:
    recorder = Recorder()
    runner = InferenceRunner(RunnerOptions(max_batch_size=256), observer=recorder)
    requests = [features(seed, 1 + seed % 3) for seed in range(64)]

    async def scenario() -> list[Tensors]:
        await runner.start()
        answers = await asyncio.gather(*(runner.run(model, inputs) for inputs in requests))
        await runner.aclose()
        return answers

    answers = run_scenario(scenario)
    for answer, inputs in zip(answers, requests, strict=True):
        assert_own_rows(answer, model, inputs)
    rows = sum(len(inputs["features"]) for inputs in requests)
    assert [(r.requests, r.rows, r.error) for r in recorder.reports] == [(64, rows, None)]
    assert not recorder.reports[0].inline  # 127 rows: in a thread, off the event loop


class TwoInputModel:
    """A model with a float and an integer input (as tabular models will have); it records the
    rows of every call."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def run(self, inputs: Mapping[str, np.ndarray]) -> Tensors:
        features, categorical = inputs["features"], inputs["categorical"]
        self.calls.append(len(features))
        row_sums = features.sum(axis=1) + categorical.sum(axis=1)
        return {"row_sums": row_sums, "categorical": categorical * 10}


def test_a_batch_concatenates_every_input_and_splits_every_output() -> None:
    model = TwoInputModel()
    runner = InferenceRunner(RunnerOptions(inline_max_rows=0))
    requests = [
        {
            "features": np.full((rows, 3), float(index), dtype=np.float32),
            "categorical": np.arange(rows * 2, dtype=np.int64).reshape(rows, 2) + 100 * index,
        }
        for index, rows in enumerate([1, 3, 2, 5])
    ]

    async def scenario() -> list[Tensors]:
        await runner.start()
        answers = await asyncio.gather(*(runner.run(model, inputs) for inputs in requests))
        await runner.aclose()
        return answers

    answers = run_scenario(scenario)
    assert model.calls == [11]
    for answer, inputs in zip(answers, requests, strict=True):
        np.testing.assert_array_equal(answer["categorical"], inputs["categorical"] * 10)
        expected = inputs["features"].sum(axis=1) + inputs["categorical"].sum(axis=1)
        np.testing.assert_array_equal(answer["row_sums"], expected)


class PoisonedModel:
    """Fails every call that holds a row starting with -999."""

    def __init__(self, model: ServedModel) -> None:
        self.model = model

    def run(self, inputs: Mapping[str, np.ndarray]) -> Tensors:
        if (inputs["features"][:, 0] == -999).any():
            raise ValueError("poisoned row")
        return self.model.run(inputs)


def test_an_error_fails_exactly_the_requests_of_its_batch(model: ServedModel) -> None:
    recorder = Recorder()
    runner = InferenceRunner(RunnerOptions(max_batch_size=4, inline_max_rows=0), recorder)
    requests = [features(seed, 1) for seed in range(12)]
    requests[5]["features"][0, 0] = -999
    poisoned = PoisonedModel(model)

    async def scenario() -> list[Any]:
        await runner.start()
        calls = (runner.run(poisoned, inputs) for inputs in requests)
        answers = await asyncio.gather(*calls, return_exceptions=True)
        await runner.aclose()
        return answers

    answers = run_scenario(scenario)
    failed = [index for index, answer in enumerate(answers) if isinstance(answer, Exception)]
    assert failed == [4, 5, 6, 7]  # the second batch of four, in arrival order
    assert {str(answers[index]) for index in failed} == {"poisoned row"}
    for index, answer in enumerate(answers):
        if index not in failed:
            assert_own_rows(answer, model, requests[index])
    assert [(r.requests, r.error is not None) for r in recorder.reports] == [
        (4, False),
        (4, True),
        (4, False),
    ]


def test_without_batching_every_request_is_its_own_call(model: ServedModel) -> None:
    recorder = Recorder()
    runner = InferenceRunner(RunnerOptions(batching=False), recorder)
    requests = [features(seed, 2) for seed in range(10)]

    async def scenario() -> list[Tensors]:
        await runner.start()
        answers = await asyncio.gather(*(runner.run(model, inputs) for inputs in requests))
        await runner.aclose()
        return answers

    for answer, inputs in zip(run_scenario(scenario), requests, strict=True):
        assert_own_rows(answer, model, inputs)
    assert [(r.requests, r.rows, r.inline) for r in recorder.reports] == [(1, 2, True)] * 10


def test_requests_for_different_models_never_share_a_call(model: ServedModel) -> None:
    recorder = Recorder()
    runner = InferenceRunner(RunnerOptions(), recorder)
    other = PoisonedModel(model)  # another model object (it answers like the first)
    targets = [model, other, model, other, model]
    requests = [features(seed, 1) for seed in range(5)]

    async def scenario() -> list[Tensors]:
        await runner.start()
        calls = (runner.run(m, inputs) for m, inputs in zip(targets, requests, strict=True))
        answers = await asyncio.gather(*calls)
        await runner.aclose()
        return answers

    for answer, inputs in zip(run_scenario(scenario), requests, strict=True):
        assert_own_rows(answer, model, inputs)
    assert [(r.model, r.requests) for r in recorder.reports] == [(model, 3), (other, 2)]


def test_a_batch_waits_up_to_the_delay_for_more_requests(model: ServedModel) -> None:
    def calls_for_two_requests_apart(delay_s: float) -> list[int]:
        recorder = Recorder()
        runner = InferenceRunner(RunnerOptions(max_batch_delay_s=delay_s), recorder)

        async def scenario() -> None:
            await runner.start()
            first = asyncio.ensure_future(runner.run(model, features(1, 1)))
            await until(lambda: runner.queued == 1)
            for _ in range(3):  # a few loop turns: without a delay the first one runs now
                await asyncio.sleep(0)
            await runner.run(model, features(2, 1))
            await first
            await runner.aclose()

        run_scenario(scenario)
        return [report.requests for report in recorder.reports]

    assert calls_for_two_requests_apart(0.0) == [1, 1]
    assert calls_for_two_requests_apart(0.5) == [2]


def test_small_batches_run_inline_and_larger_ones_in_a_thread(model: ServedModel) -> None:
    recorder = Recorder()
    runner = InferenceRunner(RunnerOptions(inline_max_rows=16), recorder)

    async def scenario() -> None:
        await runner.start()
        await runner.run(model, features(1, 16))
        await runner.run(model, features(2, 17))
        await runner.aclose()

    run_scenario(scenario)
    assert [(r.rows, r.inline) for r in recorder.reports] == [(16, True), (17, False)]


def test_a_full_queue_refuses_at_once_with_overloaded(model: ServedModel) -> None:
    blocking = BlockingModel(model)
    runner = InferenceRunner(RunnerOptions(concurrency=1, max_queued=2, inline_max_rows=0))

    async def scenario() -> tuple[list[Tensors], OverloadedError]:
        await runner.start()
        running = asyncio.ensure_future(runner.run(blocking, features(0, 1)))
        await until(lambda: runner.running == 1)
        waiting = [asyncio.ensure_future(runner.run(blocking, features(s, 1))) for s in (1, 2)]
        await until(lambda: runner.queued == 2)
        with pytest.raises(OverloadedError) as refused:
            await runner.run(blocking, features(3, 1))
        blocking.release.set()
        answers = await asyncio.gather(running, *waiting)
        await runner.aclose()
        return answers, refused.value

    answers, error = run_scenario(scenario)
    for seed, answer in enumerate(answers):
        assert_own_rows(answer, model, features(seed, 1))
    assert (error.status, error.code, error.headers) == (503, "overloaded", (("Retry-After", "1"),))
    assert error.message == (
        "the server is at capacity: 2 requests are already waiting for an inference; retry "
        "shortly (the server's limit is MMOE_MAX_QUEUED_REQUESTS)"
    )
    assert error.details == {"max_queued_requests": 2}


def test_closing_finishes_queued_requests_and_refuses_new_ones(model: ServedModel) -> None:
    blocking = BlockingModel(model)
    runner = InferenceRunner(RunnerOptions(concurrency=1, inline_max_rows=0))

    async def scenario() -> list[Tensors]:
        await runner.start()
        running = asyncio.ensure_future(runner.run(blocking, features(0, 2)))
        await until(lambda: runner.running == 1)
        waiting = [asyncio.ensure_future(runner.run(blocking, features(s, 2))) for s in (1, 2, 3)]
        await until(lambda: runner.queued == 3)
        closing = asyncio.ensure_future(runner.aclose())
        await until(lambda: runner._closing)
        with pytest.raises(ShuttingDownError):
            await runner.run(blocking, features(4, 1))
        assert not closing.done()
        blocking.release.set()
        await closing
        assert (runner.queued, runner.running) == (0, 0)
        return [task.result() for task in (running, *waiting)]

    for seed, answer in enumerate(run_scenario(scenario)):
        assert_own_rows(answer, model, features(seed, 2))


def test_the_runner_keeps_no_model_after_its_batch(model: ServedModel) -> None:
    runner = InferenceRunner(RunnerOptions(inline_max_rows=0))
    held = [PoisonedModel(model)]  # the test's only reference, dropped below
    reference = weakref.ref(held[0])

    async def scenario() -> None:
        await runner.start()
        await asyncio.gather(*(runner.run(held[0], features(s, 1)) for s in range(8)))

    run_scenario(scenario)  # the runner is still open: only its batches are over
    held.clear()
    gc.collect()
    assert reference() is None
    run_scenario(runner.aclose)


def test_a_runner_that_was_never_started_says_so(model: ServedModel) -> None:
    runner = InferenceRunner()
    with pytest.raises(RuntimeError, match="not started"):
        run_scenario(lambda: runner.run(model, features(0, 1)))


def test_inputs_must_share_their_batch_axis(model: ServedModel) -> None:
    runner = InferenceRunner()

    async def scenario() -> None:
        await runner.start()
        inputs = {"a": np.zeros((2, 3)), "b": np.zeros((3, 3))}
        await runner.run(model, inputs)

    with pytest.raises(ValueError, match="the same batch axis first"):
        run_scenario(scenario)
