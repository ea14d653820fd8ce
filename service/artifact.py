"""Trust a model version's card only after checking it against the file and the graph.

Checks, in order: `model.json` is a valid card for this directory's name and version; the sha256
of `model.onnx` is the card's; the card embedded in the ONNX metadata is the same card; the graph's
real inputs and outputs are the ones the card and the artifact contract promise.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pydantic import ValidationError

from service.contract import (
    CARD_FILE,
    CARD_METADATA_KEY,
    INPUT_CATEGORICAL,
    INPUT_FEATURES,
    MODEL_FILE,
    OUTPUT_GATES,
    OUTPUT_PREDICTIONS,
)
from service.errors import ModelLoadError
from service.model_card import ModelCard
from service.runtime import TensorSignature
from service.validation_errors import describe_problems

FLOAT_TENSOR = "tensor(float)"
INT64_TENSOR = "tensor(int64)"

# What a version directory's files looked like: (name, size, mtime_ns, inode) per file, or None
# for a missing one. A changed fingerprint means the version must be loaded and checked again.
Fingerprint = tuple[tuple[str, int, int, int] | None, ...]


def fingerprint(directory: Path) -> Fingerprint:
    """The fingerprint of `<directory>/model.json` and `model.onnx` (two stat calls)."""
    stats: list[tuple[str, int, int, int] | None] = []
    for name in (CARD_FILE, MODEL_FILE):
        try:
            stat = (directory / name).stat()
        except OSError:
            stats.append(None)
        else:
            stats.append((name, stat.st_size, stat.st_mtime_ns, stat.st_ino))
    return tuple(stats)


def read_file(path: Path, what: str) -> bytes:
    """A model version's file, or a ModelLoadError saying which file could not be read and why."""
    try:
        return path.read_bytes()
    except OSError as error:
        raise ModelLoadError(f"{path}: cannot read the {what}: {error.strerror}") from None


def read_card(directory: Path) -> ModelCard:
    """Parse and validate `<directory>/model.json`."""
    path = directory / CARD_FILE
    return parse_card(read_file(path, "model card"), str(path))


def parse_card(text: str | bytes, source: str) -> ModelCard:
    if isinstance(text, bytes):
        try:
            text.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ModelLoadError(
                f"{source}: invalid model card: it is not UTF-8 text (byte {error.start} is "
                f"0x{text[error.start]:02x}); a card is JSON in UTF-8, as training writes it"
            ) from None
    try:
        return ModelCard.model_validate_json(text)
    except ValidationError as error:
        problems = describe_problems(error.errors(), name=lambda field: field or "(card)")
        raise ModelLoadError(f"{source}: invalid model card: {problems}") from None


def verify_location(card: ModelCard, name: str, version: int, source: str) -> None:
    if (card.name, card.version) != (name, version):
        raise ModelLoadError(
            f"{source}: the card says {card.name!r} version {card.version}, but it is stored as "
            f"{name!r} version {version}; the directory must be <models>/<name>/<version>/"
        )


def verify_sha256(card: ModelCard, model_bytes: bytes, source: str) -> None:
    if card.onnx.sha256 is None:
        raise ModelLoadError(f"{source}: the model card has no onnx.sha256 to check the file with")
    digest = hashlib.sha256(model_bytes).hexdigest()
    if digest != card.onnx.sha256:
        raise ModelLoadError(
            f"{source}: sha256 of the ONNX file is {digest}, the model card says "
            f"{card.onnx.sha256}; the file and its card do not belong together (re-export the "
            "model, or restore the matching model.onnx)"
        )


def verify_embedded_card(card: ModelCard, metadata: dict[str, str], source: str) -> None:
    text = metadata.get(CARD_METADATA_KEY)
    if text is None:
        raise ModelLoadError(
            f"{source}: the ONNX metadata has no {CARD_METADATA_KEY!r}; was it exported by "
            "the training package?"
        )
    embedded = parse_card(text, f"{source} (embedded card)")
    if embedded != card.embedded():
        expected = card.embedded().model_dump(mode="json")
        found = embedded.model_dump(mode="json")
        fields = sorted(key for key in expected if expected[key] != found.get(key))
        raise ModelLoadError(
            f"{source}: model.json differs from the card embedded in the ONNX file in {fields}"
        )


def expected_outputs(card: ModelCard) -> dict[str, list[int | None]]:
    """What the artifact contract says this card's graph must output (batch axis as None)."""
    outputs: dict[str, list[int | None]] = {OUTPUT_PREDICTIONS: [None, len(card.tasks)]}
    if card.experts.gates > 0:
        outputs[OUTPUT_GATES] = [None, card.experts.gates, card.experts.count]
    return outputs


def verify_signature(
    card: ModelCard,
    inputs: list[TensorSignature],
    outputs: list[TensorSignature],
    source: str,
) -> None:
    """The graph's declared inputs and outputs must be the card's and the contract's."""
    if card.input.name != INPUT_FEATURES:
        raise ModelLoadError(
            f"{source}: the card names the input {card.input.name!r}, "
            f"the contract {INPUT_FEATURES!r}"
        )
    expected_inputs = [TensorSignature(INPUT_FEATURES, FLOAT_TENSOR, [None, card.input.dim])]
    if card.categorical is not None:
        width = len(card.categorical.features)
        expected_inputs.append(TensorSignature(INPUT_CATEGORICAL, INT64_TENSOR, [None, width]))
    if [_comparable(node) for node in inputs] != [_comparable(n) for n in expected_inputs]:
        raise ModelLoadError(
            f"{source}: the graph's inputs are {_describe(inputs)}, but the card promises "
            f"{_describe(expected_inputs)}"
        )
    promised = expected_outputs(card)
    if card.onnx.outputs != promised:
        raise ModelLoadError(
            f"{source}: the card lists outputs {json.dumps(card.onnx.outputs)}, but a "
            f"{card.architecture} card with {len(card.tasks)} tasks and {card.experts.count} "
            f"experts implies {json.dumps(promised)}"
        )
    declared = [_comparable(node) for node in outputs]
    wanted = [(name, FLOAT_TENSOR, shape) for name, shape in promised.items()]
    if sorted(declared) != sorted(wanted):
        expected_nodes = [TensorSignature(name, kind, list(shape)) for name, kind, shape in wanted]
        raise ModelLoadError(
            f"{source}: the graph's outputs are {_describe(outputs)}, but the card promises "
            f"{_describe(expected_nodes)}"
        )


def _comparable(node: TensorSignature) -> tuple[str, str, list[int | None]]:
    """Name, type and shape with every dynamic axis (a name or None) as None."""
    return node.name, node.type, [dim if isinstance(dim, int) else None for dim in node.shape]


def _describe(nodes: list[TensorSignature]) -> str:
    shown = ", ".join(
        f"{name} {kind}[{', '.join('batch' if dim is None else str(dim) for dim in shape)}]"
        for name, kind, shape in map(_comparable, nodes)
    )
    return f"[{shown}]"
