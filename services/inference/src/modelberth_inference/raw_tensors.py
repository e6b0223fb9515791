"""Tensor data in raw form, shared by both V2 codecs: gRPC's ``raw_input_contents`` and REST's binary tensor
data extension (the bytes after the JSON part). Both lay out a tensor alike: little-endian elements, no
padding; ``BYTES`` elements each a 4-byte little-endian length, then that many bytes."""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

import numpy as np

from modelberth_inference.errors import BadRequest
from modelberth_inference.validation import input_label

RAW_DTYPES: Mapping[str, str] = {
    "BOOL": "u1",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "UINT8": "u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
"""A datatype's element in raw form (``BYTES``: length-prefixed, see :func:`length_prefixed`)."""
DATATYPE_LIST = "BOOL, INT8-64, UINT8-64, FP16 (raw only), FP32, FP64 or BYTES"


def raw_data(name: str, datatype: str, raw: bytes) -> Any:
    """One input's raw bytes as its flat values: a NumPy array (numbers, BOOL) or a list of bytes (BYTES);
    400 for bytes that are not whole elements of ``datatype``."""
    if datatype == "BYTES":
        return length_prefixed(name, raw)
    dtype = RAW_DTYPES.get(datatype)
    if dtype is None:
        raise BadRequest(f"{input_label(name)}: datatype must be {DATATYPE_LIST}")
    size = np.dtype(dtype).itemsize
    if len(raw) % size:
        raise BadRequest(
            f"{input_label(name)}: raw contents of {len(raw)} bytes are not whole {datatype} elements"
            f" ({size} bytes each)"
        )
    array = np.frombuffer(raw, dtype=dtype)
    if datatype == "BOOL":
        if array.size and array.max() > 1:
            raise BadRequest(f"{input_label(name)}: BOOL raw contents must be bytes 0 or 1")
        return array.astype(np.bool_)
    return array


def length_prefixed(name: str, raw: bytes) -> list[bytes]:
    """BYTES elements in raw form: each a 4-byte little-endian length, then that many bytes."""
    out: list[bytes] = []
    at, end = 0, len(raw)
    while at < end:
        if at + 4 > end:
            raise BadRequest(f"{input_label(name)}: BYTES raw contents end inside an element's length")
        (length,) = struct.unpack_from("<I", raw, at)
        at += 4
        if at + length > end:
            raise BadRequest(f"{input_label(name)}: a BYTES element's length runs past the raw contents")
        out.append(raw[at : at + length])
        at += length
    return out
