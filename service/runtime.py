"""onnxruntime: which execution provider, one session per model file, and running it.

`auto` takes CUDA when this onnxruntime build offers it, otherwise CPU. `cuda` asked for and not
offered is a start-up error. After the session is made, the providers it really uses are read
back: onnxruntime silently falls back to CPU when the CUDA libraries fail to load.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnxruntime

from service.errors import ModelLoadError, ProviderUnavailableError

logger = logging.getLogger(__name__)

CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"

GPU_HELP = (
    "install the GPU build of onnxruntime (pip uninstall onnxruntime && pip install "
    "'mmoe-service[gpu]', which brings onnxruntime-gpu) with the CUDA and cuDNN libraries it "
    "needs on the library path, run on a machine with an NVIDIA GPU (docker: --gpus all), "
    "or set MMOE_PROVIDER=auto or MMOE_PROVIDER=cpu"
)


def choose_providers(requested: str, available: Sequence[str]) -> list[str]:
    """The provider list to hand onnxruntime for `requested` ('auto', 'cpu' or 'cuda')."""
    if requested == "cpu":
        return [CPU_PROVIDER]
    if requested == "cuda":
        if CUDA_PROVIDER not in available:
            raise ProviderUnavailableError(
                f"MMOE_PROVIDER=cuda, but this onnxruntime build ({onnxruntime.__version__}) "
                f"offers only {list(available)}; {GPU_HELP}"
            )
        return [CUDA_PROVIDER, CPU_PROVIDER]
    if requested == "auto":
        return [CUDA_PROVIDER, CPU_PROVIDER] if CUDA_PROVIDER in available else [CPU_PROVIDER]
    raise ValueError(f"unknown provider {requested!r}; expected auto, cpu or cuda")


def provider_label(providers: Sequence[str]) -> str:
    """'cuda' or 'cpu': the provider that runs the graph (the first one onnxruntime kept)."""
    return "cuda" if providers and providers[0] == CUDA_PROVIDER else "cpu"


@dataclass(frozen=True)
class RuntimeOptions:
    """How every session is made; the same for every model in the repository."""

    provider: str = "auto"
    intra_op_threads: int = 1


@dataclass(frozen=True)
class TensorSignature:
    """A graph input or output as onnxruntime declares it; str or None dims are dynamic."""

    name: str
    type: str
    shape: list[int | str | None]

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "type": self.type, "shape": self.shape}


class OnnxSession:
    """One onnxruntime session over one ONNX model, and the provider it really runs on."""

    def __init__(self, model_bytes: bytes, source: str, options: RuntimeOptions) -> None:
        requested = choose_providers(options.provider, onnxruntime.get_available_providers())
        session_options = onnxruntime.SessionOptions()
        session_options.intra_op_num_threads = options.intra_op_threads
        session_options.inter_op_num_threads = 1
        session_options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Calls run beside the event loop (which parses other requests) and each other: idle
        # intra-op threads spinning for work
        # steal the cores those requests need (measured on 2 cores, 16 concurrent 64-row
        # requests: 1.8x fewer requests/s with spinning). They sleep instead.
        session_options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = onnxruntime.InferenceSession(
                model_bytes, sess_options=session_options, providers=requested
            )
        except Exception as error:  # onnxruntime raises its own untyped pybind errors
            raise ModelLoadError(f"{source}: onnxruntime cannot load this model: {error}") from None
        self.providers: list[str] = list(self._session.get_providers())
        if CUDA_PROVIDER in requested and CUDA_PROVIDER not in self.providers:
            if options.provider == "cuda":
                raise ProviderUnavailableError(
                    f"MMOE_PROVIDER=cuda, but onnxruntime fell back to {self.providers} for "
                    f"{source} (the CUDA provider failed to load; see the onnxruntime log above); "
                    f"{GPU_HELP}"
                )
            logger.warning(
                "%s: CUDA is offered but onnxruntime fell back to %s", source, self.providers
            )
        self.provider = provider_label(self.providers)
        self.inputs = [_signature(node) for node in self._session.get_inputs()]
        self.outputs = [_signature(node) for node in self._session.get_outputs()]
        self.metadata: dict[str, str] = dict(self._session.get_modelmeta().custom_metadata_map)

    def run(self, output_names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """One inference. Thread-safe: onnxruntime sessions allow concurrent `run` calls."""
        outputs: list[np.ndarray] = self._session.run(output_names, feeds)
        return outputs


def _signature(node: onnxruntime.NodeArg) -> TensorSignature:
    return TensorSignature(name=node.name, type=node.type, shape=list(node.shape))
