import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from service.contract import CARD_METADATA_KEY
from training.export import (
    ExportValidationError,
    InferenceGraph,
    expected_signature,
    export_onnx,
    validate_export,
)
from training.models import MMoE, SharedBottom

D = 12


def exported(tmp_path, model, task_types=("regression", "regression")):
    graph = InferenceGraph(model, list(task_types)).eval()
    path = tmp_path / "model.onnx"
    export_onnx(graph, path, '{"name": "test"}')
    return graph, path


@pytest.fixture
def features():
    return np.random.default_rng(0).normal(size=(9, D)).astype(np.float32)


def test_export_has_the_contract_signature_and_the_card_in_its_metadata(tmp_path):
    torch.manual_seed(0)
    _, path = exported(tmp_path, MMoE(D, 2, 4, 8, 4))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [(i.name, i.shape, i.type) for i in session.get_inputs()] == [
        ("features", ["batch", D], "tensor(float)")
    ]
    assert [(o.name, o.shape, o.type) for o in session.get_outputs()] == [
        ("predictions", ["batch", 2], "tensor(float)"),
        ("gates", ["batch", 2, 4], "tensor(float)"),
    ]
    metadata = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert metadata == {CARD_METADATA_KEY: '{"name": "test"}'}


def test_onnxruntime_matches_pytorch_for_any_batch_size(tmp_path, features):
    torch.manual_seed(0)
    graph, path = exported(tmp_path, MMoE(D, 2, 4, 8, 4))
    worst = validate_export(
        path,
        graph,
        {"rows": features, "one": features[:1]},
        expected_signature(graph, 2),
        1e-4,
        1e-5,
    )
    assert set(worst) == {"predictions", "gates"}
    assert max(worst.values()) < 1e-5


def test_shared_bottom_exports_no_gates(tmp_path, features):
    torch.manual_seed(0)
    graph, path = exported(tmp_path, SharedBottom(D, 2, 16, 4))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["predictions"]
    assert expected_signature(graph, 2) == {"predictions": [None, 2]}


def test_binary_tasks_are_exported_as_probabilities(tmp_path, features):
    torch.manual_seed(0)
    model = MMoE(D, 2, 4, 8, 4).eval()
    _graph, path = exported(tmp_path, model, ("regression", "binary"))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    predictions, _ = session.run(None, {"features": features})
    raw, _ = model(torch.from_numpy(features))
    raw = raw.detach().numpy()
    np.testing.assert_allclose(predictions[:, 0], raw[:, 0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(predictions[:, 1], 1 / (1 + np.exp(-raw[:, 1])), rtol=1e-5)


def test_a_graph_that_differs_from_pytorch_fails_validation_naming_the_output(tmp_path, features):
    torch.manual_seed(0)
    graph, path = exported(tmp_path, MMoE(D, 2, 4, 8, 4))
    with torch.no_grad():
        graph.model.towers.output_bias += 0.5
    with pytest.raises(ExportValidationError) as error:
        validate_export(
            path, graph, {"held-out": features}, expected_signature(graph, 2), 1e-4, 1e-5
        )
    assert error.value.output == "predictions"
    assert str(error.value) == (
        "export validation failed for output 'predictions': on held-out inputs differs from "
        "PyTorch by up to 0.5 (rtol=0.0001, atol=1e-05)"
    )


def test_a_graph_with_the_wrong_gate_shape_fails_validation(tmp_path, features):
    torch.manual_seed(0)
    graph, path = exported(tmp_path, MMoE(D, 2, 4, 8, 4))
    signature = {"predictions": [None, 2], "gates": [None, 2, 5]}
    with pytest.raises(ExportValidationError) as error:
        validate_export(path, graph, {"rows": features}, signature, 1e-4, 1e-5)
    assert str(error.value) == (
        "export validation failed for output 'gates': declared shape ['batch', 2, 4], "
        "expected ['batch', 2, 5]"
    )
