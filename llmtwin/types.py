"""Domain type aliases. Units are part of the name: seconds, bytes, tokens, FLOPs."""

from __future__ import annotations

from typing import Literal, NewType

Seconds = float
"""Virtual (simulated) time or a duration, in seconds."""
Bytes = float
"""A byte count; float because per-device shards and fractional prefetches are not integral."""
Flops = float
"""Floating-point (or integer MAC) operations; one multiply-add counts as 2."""
Tokens = int
"""A token count."""

RequestId = NewType("RequestId", int)
InstanceId = NewType("InstanceId", int)
DeviceId = NewType("DeviceId", str)

Dtype = Literal["fp32", "bf16", "fp16", "fp8", "int8", "int4"]
"""Numeric precision of one tensor class (weights, activations or KV cache)."""

DTYPE_BYTES: dict[str, float] = {
    "fp32": 4.0,
    "bf16": 2.0,
    "fp16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "int4": 0.5,
}
"""Bytes per element of each precision."""

Phase = Literal["prefill", "decode"]
