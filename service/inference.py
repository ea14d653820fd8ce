"""How an inference is scheduled: the seam where micro-batching will go (a later issue).

`ThreadPoolRunner` runs each request's one onnxruntime call in the anyio worker thread pool, off the
event loop: onnxruntime releases the GIL while it computes, so the loop keeps accepting and parsing
other requests meanwhile. A micro-batching runner implements the same `InferenceRunner` protocol,
collecting concurrent requests for one model into one `ServedModel.predict` call.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import numpy as np
from anyio import to_thread

from service.model import ModelOutputs, ServedModel

Feeds = Mapping[str, np.ndarray]  # graph input name -> rows, batch axis first


class InferenceRunner(Protocol):
    async def run(self, model: ServedModel, feeds: Feeds, return_gates: bool) -> ModelOutputs: ...


class ThreadPoolRunner:
    """One `model.predict` per request, in a worker thread."""

    async def run(self, model: ServedModel, feeds: Feeds, return_gates: bool) -> ModelOutputs:
        return await to_thread.run_sync(model.predict, feeds, return_gates)
