"""Execution provider choice: auto takes CUDA when offered, cuda without CUDA is an error."""

from __future__ import annotations

import onnxruntime
import pytest

from service.errors import ProviderUnavailableError
from service.runtime import (
    CPU_PROVIDER,
    CUDA_PROVIDER,
    OnnxSession,
    RuntimeOptions,
    choose_providers,
    provider_label,
)
from tests.support import bundled_version_dir

BUNDLED = bundled_version_dir() / "model.onnx"
CPU_ONLY = ["AzureExecutionProvider", CPU_PROVIDER]
WITH_CUDA = ["TensorrtExecutionProvider", CUDA_PROVIDER, CPU_PROVIDER]


def test_auto_takes_cuda_when_onnxruntime_offers_it() -> None:
    assert choose_providers("auto", WITH_CUDA) == [CUDA_PROVIDER, CPU_PROVIDER]
    assert choose_providers("auto", CPU_ONLY) == [CPU_PROVIDER]


def test_cpu_is_cpu_even_where_cuda_is_offered() -> None:
    assert choose_providers("cpu", WITH_CUDA) == [CPU_PROVIDER]


def test_cuda_takes_cuda_with_cpu_behind_it() -> None:
    assert choose_providers("cuda", WITH_CUDA) == [CUDA_PROVIDER, CPU_PROVIDER]


def test_cuda_without_cuda_says_how_to_get_it() -> None:
    with pytest.raises(ProviderUnavailableError) as raised:
        choose_providers("cuda", CPU_ONLY)
    assert str(raised.value) == (
        f"MMOE_PROVIDER=cuda, but this onnxruntime build ({onnxruntime.__version__}) offers only "
        "['AzureExecutionProvider', 'CPUExecutionProvider']; install the GPU build of onnxruntime "
        "(pip uninstall onnxruntime && pip install 'mmoe-service[gpu]', which brings "
        "onnxruntime-gpu) with the CUDA and cuDNN libraries it needs on the library path, run on "
        "a machine with an NVIDIA GPU (docker: --gpus all), or set MMOE_PROVIDER=auto or "
        "MMOE_PROVIDER=cpu"
    )


def test_the_label_follows_the_providers_the_session_really_uses() -> None:
    assert provider_label([CUDA_PROVIDER, CPU_PROVIDER]) == "cuda"
    assert provider_label([CPU_PROVIDER]) == "cpu"


def test_a_cpu_session_runs_on_the_cpu() -> None:
    session = OnnxSession(BUNDLED.read_bytes(), str(BUNDLED), RuntimeOptions("cpu", 1))
    assert (session.provider, session.providers) == ("cpu", [CPU_PROVIDER])


@pytest.mark.skipif(
    CUDA_PROVIDER in onnxruntime.get_available_providers(), reason="this onnxruntime has CUDA"
)
def test_auto_falls_back_to_the_cpu_when_cuda_is_offered_but_does_not_load(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """onnxruntime drops a provider it cannot load: the label follows what the session kept."""
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: WITH_CUDA)
    with pytest.warns(UserWarning, match="'CUDAExecutionProvider' is not in available provider"):
        session = OnnxSession(BUNDLED.read_bytes(), str(BUNDLED), RuntimeOptions("auto", 1))
    assert (session.provider, session.providers) == ("cpu", [CPU_PROVIDER])
    assert [record.getMessage() for record in caplog.records] == [
        f"{BUNDLED}: CUDA is offered but onnxruntime fell back to ['CPUExecutionProvider']"
    ]


@pytest.mark.skipif(
    CUDA_PROVIDER in onnxruntime.get_available_providers(), reason="this onnxruntime has CUDA"
)
def test_a_cuda_session_without_cuda_fails() -> None:
    with pytest.raises(ProviderUnavailableError, match=r"^MMOE_PROVIDER=cuda, but this"):
        OnnxSession(BUNDLED.read_bytes(), str(BUNDLED), RuntimeOptions("cuda", 1))
