"""The protocol's tensor datatypes, with their numpy and onnxruntime equivalents.

Binary tensor data is little-endian, row-major, without padding, each element in its native size
(BOOL: one byte, 0 or 1). BYTES tensors (length-prefixed strings) take no part in this service's
models, whose graphs take and give numbers only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np


@dataclass(frozen=True)
class Datatype:
    name: str  # the protocol's name: FP32
    onnx: str  # onnxruntime's name for a tensor of it: tensor(float)
    dtype: np.dtype | None  # little-endian numpy dtype; None for BYTES

    @property
    def itemsize(self) -> int:
        assert self.dtype is not None, f"{self.name} has no fixed element size"
        return self.dtype.itemsize

    @property
    def triton_type(self) -> str:
        """Triton's model-configuration name: TYPE_FP32 (TYPE_STRING for BYTES)."""
        return "TYPE_STRING" if self.name == "BYTES" else f"TYPE_{self.name}"


DATATYPES: Final = (
    Datatype("BOOL", "tensor(bool)", np.dtype("?")),
    Datatype("UINT8", "tensor(uint8)", np.dtype("<u1")),
    Datatype("UINT16", "tensor(uint16)", np.dtype("<u2")),
    Datatype("UINT32", "tensor(uint32)", np.dtype("<u4")),
    Datatype("UINT64", "tensor(uint64)", np.dtype("<u8")),
    Datatype("INT8", "tensor(int8)", np.dtype("<i1")),
    Datatype("INT16", "tensor(int16)", np.dtype("<i2")),
    Datatype("INT32", "tensor(int32)", np.dtype("<i4")),
    Datatype("INT64", "tensor(int64)", np.dtype("<i8")),
    Datatype("FP16", "tensor(float16)", np.dtype("<f2")),
    Datatype("FP32", "tensor(float)", np.dtype("<f4")),
    Datatype("FP64", "tensor(double)", np.dtype("<f8")),
    Datatype("BYTES", "tensor(string)", None),
)
BY_NAME: Final = {datatype.name: datatype for datatype in DATATYPES}
BY_ONNX: Final = {datatype.onnx: datatype for datatype in DATATYPES}
NAMES: Final = ", ".join(BY_NAME)


def of_onnx(onnx_type: str) -> Datatype:
    """The datatype of an onnxruntime tensor type ('tensor(float)' -> FP32)."""
    datatype = BY_ONNX.get(onnx_type)
    if datatype is None:
        raise ValueError(f"onnxruntime type {onnx_type!r} has no Open Inference Protocol datatype")
    return datatype


def of_array(array: np.ndarray) -> Datatype:
    """The datatype of a numpy array of numbers or booleans."""
    for datatype in DATATYPES:
        if datatype.dtype is not None and array.dtype.newbyteorder("<") == datatype.dtype:
            return datatype
    raise ValueError(f"numpy dtype {array.dtype} has no Open Inference Protocol datatype")
