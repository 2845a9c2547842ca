"""Bytes per element of each numeric precision (the one table every size computation uses)."""

from __future__ import annotations

DTYPE_BYTES: dict[str, float] = {
    "fp32": 4.0,
    "bf16": 2.0,
    "fp16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "int4": 0.5,
}
"""Bytes per element of each precision (weights, activations or KV cache)."""
