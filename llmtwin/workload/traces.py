"""Request traces: CSV files of arrival times and prompt/output token counts.

The format is that of the Azure LLM inference traces (shipped under llmtwin/data/traces/)::

    TIMESTAMP,ContextTokens,GeneratedTokens
    2023-11-16 18:15:46.6805900,374,44

``TIMESTAMP`` is a date-time (any ISO-8601 form numpy reads, up to nanoseconds) or a number of
seconds. A trace is referred to by name (the file stem of a ``.csv`` in a trace directory: the
shipped one plus ``<dir>/traces`` for each directory of ``LLMTWIN_CATALOG_PATH``) or by path.
"""

from __future__ import annotations

import csv
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from llmtwin.catalog_files import catalog_dirs
from llmtwin.errors import CatalogFileError, UnknownTrace

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")


@dataclass(frozen=True, eq=False)
class Trace:
    """One trace, rows sorted by arrival time (ties keep file order)."""

    name: str
    path: Path
    arrival_s: FloatArray
    """Seconds since the first request (the first entry is 0)."""
    prompt_tokens: IntArray
    output_tokens: IntArray

    def __len__(self) -> int:
        return len(self.arrival_s)


def trace_files(extra_dirs: Iterable[Path] = ()) -> dict[str, Path]:
    """Map of trace name (file stem) to CSV file; later directories override earlier ones."""
    found: dict[str, Path] = {}
    for d in catalog_dirs("traces", extra_dirs):
        if d.is_dir():
            for f in sorted(d.glob("*.csv")):
                found[f.stem] = f
    return found


def trace_names() -> list[str]:
    return sorted(trace_files())


def is_trace_path(ref: str) -> bool:
    """Whether ``ref`` is a file path rather than a trace name."""
    return ref.endswith(".csv") or "/" in ref


def resolve_trace(ref: str) -> Path:
    """The CSV file a trace name or path refers to."""
    if is_trace_path(ref):
        return Path(ref)
    files = trace_files()
    if ref not in files:
        raise UnknownTrace(f"unknown trace {ref!r}; known: {', '.join(sorted(files))} (or a .csv path)")
    return files[ref]


_CACHE_SIZE = 4
_cache: OrderedDict[tuple[str, Path, int, int], Trace] = OrderedDict()
"""The last traces read, keyed by the name asked for, the file and its modification time and
size: a process builds several runs from one trace (a sweep, a capacity search, the services of
``llmtwin up``, which inherit what ``up`` read before it forked them), and reading one is 30 ms
(azure-conv). A changed file is read again. Its arrays are read-only: every run shares them."""


def load_trace(ref: str) -> Trace:
    """Read and validate the trace ``ref`` (a name or a CSV path); see ``_cache``."""
    path = resolve_trace(ref)
    try:
        st = path.stat()
    except OSError as exc:
        raise CatalogFileError(f"{path}: cannot read trace: {exc.strerror}") from None
    key = (ref, path, st.st_mtime_ns, st.st_size)
    trace = _cache.get(key)
    if trace is None:
        trace = _cache[key] = _read_trace(ref, path)
        if len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    _cache.move_to_end(key)
    return trace


def _read_trace(ref: str, path: Path) -> Trace:
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except OSError as exc:
        raise CatalogFileError(f"{path}: cannot read trace: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise CatalogFileError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    if not rows or tuple(c.strip() for c in rows[0]) != COLUMNS:
        raise CatalogFileError(f"{path}: a trace's header must be {','.join(COLUMNS)}")
    body = [r for r in rows[1:] if r]
    if not body:
        raise CatalogFileError(f"{path}: the trace has no requests")
    for line, r in enumerate(body, start=2):
        if len(r) != len(COLUMNS):
            raise CatalogFileError(f"{path}: line {line}: expected {len(COLUMNS)} columns, got {len(r)}")
    stamps = [r[0].strip() for r in body]
    times = _seconds(path, stamps)
    prompt = _tokens(path, [r[1] for r in body], "ContextTokens", minimum=1)
    # Some traces log requests that generated nothing; the generator makes those one token.
    output = _tokens(path, [r[2] for r in body], "GeneratedTokens", minimum=0)
    order = np.argsort(times, kind="stable")
    times = times[order]
    columns = times - times[0], prompt[order], output[order]
    for column in columns:
        column.flags.writeable = False
    return Trace(
        name=path.stem if is_trace_path(ref) else ref,
        path=path,
        arrival_s=columns[0],
        prompt_tokens=columns[1],
        output_tokens=columns[2],
    )


def _seconds(path: Path, stamps: list[str]) -> FloatArray:
    """Timestamps as seconds (relative origin); date-times keep their nanoseconds."""
    try:
        return np.array([float(s) for s in stamps], dtype=np.float64)
    except ValueError:
        pass
    try:
        # Integer nanoseconds relative to the first stamp: float64 seconds since 1970 would lose
        # the sub-microsecond digits the Azure traces carry.
        ns: IntArray = np.array([s.replace(" ", "T") for s in stamps], dtype="datetime64[ns]").astype(
            np.int64
        )
    except ValueError as exc:
        raise CatalogFileError(f"{path}: TIMESTAMP must be a date-time or seconds: {exc}") from None
    seconds: FloatArray = (ns - ns.min()).astype(np.float64) * 1e-9
    return seconds


def _tokens(path: Path, cells: list[str], column: str, minimum: int) -> IntArray:
    try:
        values = np.array([int(c) for c in cells], dtype=np.int64)
    except ValueError as exc:
        raise CatalogFileError(f"{path}: {column} must be integers: {exc}") from None
    if values.min() < minimum:
        line = int(np.argmin(values)) + 2
        raise CatalogFileError(f"{path}: line {line}: {column} must be >= {minimum}, got {values.min()}")
    return values
