"""Load model descriptions from TOML files (shipped under llmtwin/data/models/, or the user's).

File format (field names as in the dataclass :class:`llmtwin.models.spec.ModelSpec`)::

    name = "llama-2-7b"
    hidden = 4096
    layers = 32
    heads = 32
    kv_heads = 32
    head_dim = 128
    intermediate = 11008
    vocab = 32000
    gated_mlp = true
    activation = "silu"        # silu | gelu | relu
    norm = "rmsnorm"           # rmsnorm | layernorm
    positional = "rope"        # rope | learned | alibi
    tied_embeddings = false
    qkv_bias = false           # optional
    experts = 1                # optional (MoE)
    experts_per_token = 1      # optional
    max_context = 4096
    sliding_window = 4096      # optional
    source = "https://..."
    notes = "..."              # optional free text

Unknown fields are errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from llmtwin.catalog_files import FieldReader, find_files, read_toml
from llmtwin.errors import CatalogFileError, UnknownModel
from llmtwin.models.spec import ModelSpec

_KNOWN = {
    "name", "hidden", "layers", "heads", "kv_heads", "head_dim", "intermediate", "vocab", "gated_mlp",
    "activation", "norm", "positional", "tied_embeddings", "qkv_bias", "experts", "experts_per_token",
    "max_context", "sliding_window", "source", "notes",
}  # fmt: skip


def load_model_file(path: Path) -> ModelSpec:
    """Parse and validate one model file."""
    r = FieldReader(path, read_toml(path))
    unknown = set(r.table) - _KNOWN
    if unknown:
        raise CatalogFileError(f"{path}: unknown field(s): {sorted(unknown)}")
    name = r.text("name")
    if name != path.stem:
        raise CatalogFileError(f"{path}: field 'name' is {name!r} but the file is named {path.stem!r}")
    spec = ModelSpec(
        name=name,
        hidden=r.integer("hidden"),
        layers=r.integer("layers"),
        heads=r.integer("heads"),
        kv_heads=r.integer("kv_heads"),
        head_dim=r.integer("head_dim"),
        intermediate=r.integer("intermediate"),
        vocab=r.integer("vocab"),
        gated_mlp=r.boolean("gated_mlp"),
        activation=r.text("activation", choices=("silu", "gelu", "relu")),  # type: ignore[arg-type]
        norm=r.text("norm", choices=("rmsnorm", "layernorm")),  # type: ignore[arg-type]
        positional=r.text("positional", choices=("rope", "learned", "alibi")),  # type: ignore[arg-type]
        tied_embeddings=r.boolean("tied_embeddings"),
        qkv_bias=r.boolean("qkv_bias", default=False),
        experts=r.integer("experts", default=1),
        experts_per_token=r.integer("experts_per_token", default=1),
        max_context=r.integer("max_context", default=4096),
        sliding_window=r.integer("sliding_window") if r.has("sliding_window") else None,
        source=r.text("source", default=""),
    )
    r.text("notes", default="")
    if spec.heads % spec.kv_heads:
        raise CatalogFileError(
            f"{path}: heads ({spec.heads}) must be a multiple of kv_heads ({spec.kv_heads})"
        )
    if spec.experts_per_token > spec.experts:
        raise CatalogFileError(f"{path}: experts_per_token exceeds experts")
    return spec


class ModelCatalog:
    """Named model descriptions: the shipped files plus user directories."""

    def __init__(self, extra_dirs: Iterable[Path] = ()) -> None:
        self._files = find_files("models", extra_dirs)
        self._cache: dict[str, ModelSpec] = {}

    def names(self) -> list[str]:
        return sorted(self._files)

    def get(self, name: str) -> ModelSpec:
        """The model called ``name``; a path to a .toml file also works."""
        if name.endswith(".toml"):
            return load_model_file(Path(name))
        if name not in self._files:
            raise UnknownModel(f"unknown model {name!r}; known: {', '.join(self.names())}")
        if name not in self._cache:
            self._cache[name] = load_model_file(self._files[name])
        return self._cache[name]
