"""A served model version: its verified card, its onnxruntime session, and one inference call."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service import artifact
from service.contract import (
    INPUT_CATEGORICAL,
    INPUT_FEATURES,
    MODEL_FILE,
    OOV_CODE,
    OUTPUT_GATES,
    OUTPUT_PREDICTIONS,
)
from service.errors import ModelLoadError, NonFiniteOutputError
from service.features import FeatureEncoder
from service.model_card import ModelCard
from service.payload import instances_to_array
from service.runtime import OnnxSession, RuntimeOptions

logger = logging.getLogger(__name__)

GATE_SUM_TOLERANCE = 1e-4


@dataclass(frozen=True)
class ModelOutputs:
    """One inference: predictions [batch, T]; gates [batch, G, E] when asked for and present."""

    predictions: np.ndarray
    gates: np.ndarray | None

    @classmethod
    def of(cls, outputs: Mapping[str, np.ndarray], return_gates: bool = True) -> ModelOutputs:
        """From the graph's outputs by name; the gates are always computed, and dropped here."""
        gates = outputs.get(OUTPUT_GATES) if return_gates else None
        return cls(predictions=outputs[OUTPUT_PREDICTIONS], gates=gates)


def require_finite(outputs: Mapping[str, np.ndarray]) -> None:
    """NonFiniteOutputError, naming the instances, unless every output value is a finite number:
    an overflow inside the graph is never answered as a success (JSON would show it as null)."""
    if all(np.isfinite(array).all() for array in outputs.values()):
        return
    rows = next(iter(outputs.values())).shape[0]
    bad = np.zeros(rows, dtype=bool)
    for array in outputs.values():
        bad |= ~np.isfinite(array.reshape(rows, -1)).all(axis=1)
    instances = np.flatnonzero(bad).tolist()
    shown = f"{instances[:10]}{' ...' if len(instances) > 10 else ''}"
    raise NonFiniteOutputError(
        f"the model's outputs for instance(s) {shown} are not finite numbers (they overflowed "
        "inside the model, most likely from extreme feature values); send values in the range "
        "the model was trained on",
        {"instance": instances[0], "instances": instances[:10], "instance_count": len(instances)},
    )


class ServedModel:
    """One model version ready to answer: card checked against file and graph, warm-up passed."""

    def __init__(
        self,
        card: ModelCard,
        session: OnnxSession,
        path: Path,
        source: artifact.Fingerprint = (),
    ) -> None:
        self.card = card
        self.session = session
        self.path = path
        self.source = source  # the files' fingerprint, taken before they were read
        self.name = card.name
        self.version = card.version
        self.input_dim = card.input.dim
        self.task_names = card.task_names
        self.feature_names = card.input.feature_names
        self.has_gates = card.experts.gates > 0
        self.encoder = FeatureEncoder(card) if FeatureEncoder.applies_to(card) else None
        self.output_names = (
            [OUTPUT_PREDICTIONS, OUTPUT_GATES] if self.has_gates else [OUTPUT_PREDICTIONS]
        )

    @classmethod
    def load(cls, directory: Path, options: RuntimeOptions) -> ServedModel:
        """Load `<models>/<name>/<version>/`, verify it, and run one warm-up inference."""
        source = str(directory)
        files = artifact.fingerprint(directory)  # before reading: a later change shows
        card = artifact.read_card(directory)
        artifact.verify_location(card, directory.parent.name, int(directory.name), source)
        model_path = directory / card.onnx.file
        if card.onnx.file != MODEL_FILE:
            raise ModelLoadError(
                f"{source}: the card names the file {card.onnx.file!r}, the contract {MODEL_FILE!r}"
            )
        model_bytes = artifact.read_file(model_path, "model")
        artifact.verify_sha256(card, model_bytes, str(model_path))
        session = OnnxSession(model_bytes, str(model_path), options)
        artifact.verify_embedded_card(card, session.metadata, str(model_path))
        artifact.verify_signature(card, session.inputs, session.outputs, str(model_path))
        model = cls(card, session, directory, files)
        model.warm_up()
        logger.info(
            "loaded %s version %d (%s, %d tasks) on %s from %s",
            model.name,
            model.version,
            card.architecture,
            len(card.tasks),
            session.provider,
            directory,
        )
        return model

    def feeds(self, instances: list[Any]) -> dict[str, np.ndarray]:
        """A request's instances -> the graph's inputs by name, batch axis first."""
        if self.encoder is not None:
            return self.encoder.encode(instances)
        return {INPUT_FEATURES: instances_to_array(instances, self.input_dim, self.feature_names)}

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One onnxruntime call: input name -> array (batch axis first) to output name -> array
        (gates always computed). Blocking; the inference runner decides where it runs."""
        outputs = self.session.run(self.output_names, dict(inputs))
        return dict(zip(self.output_names, outputs, strict=True))

    def predict(
        self, inputs: Mapping[str, np.ndarray] | np.ndarray, return_gates: bool = True
    ) -> ModelOutputs:
        """Feeds by input name (an array alone: `features`, float32 [batch, d]) -> outputs, in
        one blocking call."""
        feeds = {INPUT_FEATURES: inputs} if isinstance(inputs, np.ndarray) else dict(inputs)
        return ModelOutputs.of(self.run(feeds), return_gates)

    def warm_up(self) -> None:
        """One inference on a zero row (every category out of vocabulary): it must run and give
        well-formed, finite outputs."""
        source = str(self.path)
        feeds = {INPUT_FEATURES: np.zeros((1, self.input_dim), dtype=np.float32)}
        if self.card.categorical is not None:
            width = len(self.card.categorical.features)
            feeds[INPUT_CATEGORICAL] = np.full((1, width), OOV_CODE, dtype=np.int64)
        try:
            outputs = self.predict(feeds)
        except Exception as error:  # onnxruntime raises its own untyped pybind errors
            raise ModelLoadError(f"{source}: the warm-up inference failed: {error}") from None
        expected = (1, len(self.task_names))
        if outputs.predictions.shape != expected or not np.isfinite(outputs.predictions).all():
            raise ModelLoadError(
                f"{source}: warm-up predictions have shape {outputs.predictions.shape} "
                f"(expected {expected}) or are not finite"
            )
        if outputs.gates is not None:
            sums = outputs.gates.sum(axis=-1)
            if not np.allclose(sums, 1.0, atol=GATE_SUM_TOLERANCE):
                raise ModelLoadError(f"{source}: warm-up gate rows sum to {sums.tolist()}, not 1")

    @property
    def provider(self) -> str:
        return self.session.provider

    def metadata(self) -> dict[str, Any]:
        """What GET /models/{name}/versions/{version} says about this version."""
        return {
            "name": self.name,
            "version": self.version,
            "architecture": self.card.architecture,
            "tasks": self.task_names,
            "input_dim": self.input_dim,
            "provider": self.provider,
            "onnxruntime_providers": self.session.providers,
            "signature": {
                "inputs": [node.as_dict() for node in self.session.inputs],
                "outputs": [node.as_dict() for node in self.session.outputs],
            },
            "card": self.card.model_dump(mode="json"),
        }
