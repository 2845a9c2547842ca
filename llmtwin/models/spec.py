"""Typed description of a decoder-only transformer, as in its public config.json."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Activation = Literal["silu", "gelu", "relu"]
Norm = Literal["rmsnorm", "layernorm"]
Positional = Literal["rope", "learned", "alibi"]


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """Dimensions of one model. Counts are per model (not per TP shard)."""

    name: str
    hidden: int
    """Model width h."""
    layers: int
    heads: int
    """Query heads."""
    kv_heads: int
    """Key/value heads (= heads for MHA, fewer for GQA, 1 for MQA)."""
    head_dim: int
    intermediate: int
    """MLP width per expert."""
    vocab: int
    gated_mlp: bool
    """SwiGLU/GeGLU (gate and up projections) versus a plain two-matrix MLP."""
    activation: Activation
    norm: Norm
    positional: Positional
    tied_embeddings: bool
    qkv_bias: bool = False
    experts: int = 1
    """MoE experts per layer (1 = dense)."""
    experts_per_token: int = 1
    """Experts each token is routed to (top-k)."""
    max_context: int = 4096
    """Longest context (tokens) the model supports."""
    sliding_window: int | None = None
    """Attention window (tokens) if the model uses sliding-window attention."""
    source: str = ""

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def mlp_matrices(self) -> int:
        """Weight matrices in one expert's MLP: 3 when gated, else 2."""
        return 3 if self.gated_mlp else 2

    def attention_params_per_layer(self) -> int:
        h = self.hidden
        params = h * self.q_dim + 2 * h * self.kv_dim + self.q_dim * h
        if self.qkv_bias:
            params += self.q_dim + 2 * self.kv_dim
        return params

    def mlp_params_per_layer(self) -> int:
        router = self.hidden * self.experts if self.experts > 1 else 0
        return self.experts * self.mlp_matrices * self.hidden * self.intermediate + router

    def embedding_params(self) -> int:
        return self.vocab * self.hidden * (1 if self.tied_embeddings else 2)

    def total_params(self) -> int:
        norms = self.layers * 2 * self.hidden + self.hidden
        per_layer = self.attention_params_per_layer() + self.mlp_params_per_layer()
        return self.layers * per_layer + self.embedding_params() + norms

    def active_params(self) -> int:
        """Parameters one token touches (MoE: only its routed experts)."""
        dense_mlp = self.experts_per_token * self.mlp_matrices * self.hidden * self.intermediate
        per_layer = self.attention_params_per_layer() + dense_mlp
        return self.layers * per_layer + self.embedding_params() + self.layers * 2 * self.hidden

    def kv_bytes_per_token(self, kv_bytes_per_element: float) -> float:
        """KV-cache bytes one token occupies across all layers (K and V), whole model."""
        return 2.0 * self.layers * self.kv_dim * kv_bytes_per_element
