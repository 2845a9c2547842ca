"""Precision per tensor class: weights, activations and KV cache can differ (W8A8, fp8 KV, ...)."""

from __future__ import annotations

from dataclasses import dataclass

from llmtwin.errors import ConfigurationError
from llmtwin.types import DTYPE_BYTES


@dataclass(frozen=True, slots=True)
class Precision:
    """Numeric format of each tensor class. GEMMs run at the activations' format."""

    weights: str = "bf16"
    activations: str = "bf16"
    kv: str = "bf16"

    def __post_init__(self) -> None:
        for field_name in ("weights", "activations", "kv"):
            value = getattr(self, field_name)
            if value not in DTYPE_BYTES:
                raise ConfigurationError(
                    f"precision {field_name}={value!r} is not one of {', '.join(DTYPE_BYTES)}"
                )

    @classmethod
    def parse(cls, text: str) -> Precision:
        """``int8`` (everything int8), or ``weights=int8,activations=bf16,kv=fp8``."""
        if "=" not in text:
            return cls(text, text, text)
        parts: dict[str, str] = {}
        for item in text.split(","):
            key, _, value = item.partition("=")
            if key.strip() not in ("weights", "activations", "kv"):
                raise ConfigurationError(f"precision part {item!r}: expected weights=, activations= or kv=")
            parts[key.strip()] = value.strip()
        return cls(**parts)

    @property
    def weight_bytes(self) -> float:
        return DTYPE_BYTES[self.weights]

    @property
    def act_bytes(self) -> float:
        return DTYPE_BYTES[self.activations]

    @property
    def kv_bytes(self) -> float:
        return DTYPE_BYTES[self.kv]

    @property
    def compute_dtype(self) -> str:
        """Dtype the GEMM units run at: the wider of weights and activations (W8A16 runs at 16 bit)."""
        return (
            self.activations if DTYPE_BYTES[self.activations] >= DTYPE_BYTES[self.weights] else self.weights
        )

    def label(self) -> str:
        if self.weights == self.activations == self.kv:
            return self.weights
        return f"weights={self.weights},activations={self.activations},kv={self.kv}"
