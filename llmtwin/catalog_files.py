"""Shared reading of the TOML data files behind the hardware, model and engine catalogs.

A catalog is the package's own data directory plus any directories the user adds (the
``LLMTWIN_CATALOG_PATH`` environment variable, ``:``-separated, or explicit arguments). A user
file with the same name as a shipped one replaces it, so a user can re-tune a shipped device.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from llmtwin.errors import CatalogFileError

DATA_DIR = Path(__file__).resolve().parent / "data"
CATALOG_PATH_ENV = "LLMTWIN_CATALOG_PATH"


def read_toml(path: Path) -> dict[str, Any]:
    """Parse one TOML file; any syntax error, text that is not UTF-8, or a ``nan``/``inf``
    number (no catalog or scenario field takes one) becomes a one-line :class:`CatalogFileError`."""
    try:
        with path.open("rb") as fh:
            doc = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogFileError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise CatalogFileError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except OSError as exc:
        raise CatalogFileError(f"{path}: cannot read: {exc.strerror}") from None
    bad = _non_finite(doc)
    if bad is not None:
        raise CatalogFileError(f"{path}: field '{bad[0]}' is {bad[1]!r}: numbers must be finite")
    return doc


def _non_finite(value: Any, where: str = "") -> tuple[str, float] | None:
    """The dotted field and value of the first nan or inf in a parsed TOML document."""
    if isinstance(value, float) and not math.isfinite(value):
        return where, value
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        found = _non_finite(child, f"{where}.{key}" if where else str(key))
        if found is not None:
            return found
    return None


def catalog_dirs(kind: str, extra: Iterable[Path] = ()) -> list[Path]:
    """Directories holding ``kind`` files (``hardware``, ``models``, ``engines``), shipped first."""
    dirs = [DATA_DIR / kind]
    dirs.extend(Path(e) / kind for e in os.environ.get(CATALOG_PATH_ENV, "").split(os.pathsep) if e)
    dirs.extend(Path(p) for p in extra)
    return dirs


def find_files(kind: str, extra: Iterable[Path] = ()) -> dict[str, Path]:
    """Map of entry name (file stem) to file; later directories override earlier ones."""
    found: dict[str, Path] = {}
    for d in catalog_dirs(kind, extra):
        if d.is_dir():
            for f in sorted(d.glob("*.toml")):
                found[f.stem] = f
    return found


class FieldReader:
    """Typed access to a parsed TOML table that names the file and key in every error."""

    def __init__(self, path: Path, table: Mapping[str, Any], prefix: str = "") -> None:
        self.path = path
        self.table = table
        self.prefix = prefix

    def _where(self, key: str) -> str:
        return f"{self.path}: field '{self.prefix}{key}'"

    def sub(self, key: str, required: bool = True) -> FieldReader:
        value = self.table.get(key)
        if value is None:
            if required:
                raise CatalogFileError(f"{self._where(key)} is missing")
            value = {}
        if not isinstance(value, Mapping):
            raise CatalogFileError(f"{self._where(key)} must be a table")
        return FieldReader(self.path, value, f"{self.prefix}{key}.")

    def has(self, key: str) -> bool:
        return key in self.table

    def number(self, key: str, default: float | None = None, positive: bool = True) -> float:
        value = self.table.get(key, default)
        if value is None:
            raise CatalogFileError(f"{self._where(key)} is missing")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise CatalogFileError(f"{self._where(key)} must be a number, got {value!r}")
        if positive and value <= 0:
            raise CatalogFileError(f"{self._where(key)} must be > 0, got {value!r}")
        if value < 0:
            raise CatalogFileError(f"{self._where(key)} must be >= 0, got {value!r}")
        return float(value)

    def optional_number(self, key: str) -> float | None:
        return self.number(key) if key in self.table else None

    def integer(self, key: str, default: int | None = None) -> int:
        value = self.table.get(key, default)
        if value is None:
            raise CatalogFileError(f"{self._where(key)} is missing")
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise CatalogFileError(f"{self._where(key)} must be a positive integer, got {value!r}")
        return value

    def text(self, key: str, default: str | None = None, choices: Iterable[str] | None = None) -> str:
        value = self.table.get(key, default)
        if value is None:
            raise CatalogFileError(f"{self._where(key)} is missing")
        if not isinstance(value, str):
            raise CatalogFileError(f"{self._where(key)} must be a string, got {value!r}")
        if choices is not None and value not in set(choices):
            raise CatalogFileError(f"{self._where(key)} must be one of {sorted(choices)}, got {value!r}")
        return value

    def boolean(self, key: str, default: bool | None = None) -> bool:
        value = self.table.get(key, default)
        if not isinstance(value, bool):
            raise CatalogFileError(f"{self._where(key)} must be true or false, got {value!r}")
        return value

    def strings(self, key: str) -> dict[str, str]:
        value = self.table.get(key, {})
        if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
            raise CatalogFileError(f"{self._where(key)} must be a table of strings")
        return {str(k): str(v) for k, v in value.items()}
