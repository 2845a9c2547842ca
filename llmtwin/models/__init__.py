"""Transformer model descriptions from public configs, and their catalog."""

from llmtwin.models.catalog import ModelCatalog, load_model_file
from llmtwin.models.spec import ModelSpec

__all__ = ["ModelCatalog", "ModelSpec", "load_model_file"]
