"""Checks of command-line input made before a run starts, so that no result is computed and
then lost: where results go (``--out``), and whether the run fits this machine."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from llmtwin.errors import ConfigurationError
from llmtwin.runtime.run_size import check_memory
from llmtwin.scenario.spec import Scenario


def check_out(out: Path | None) -> None:
    """ConfigurationError unless files can be written in ``out`` (created if missing): tried
    for real, with a file created and removed, since permission bits do not tell everything
    (read-only mounts, a file in the way, root)."""
    if out is None:
        return
    try:
        if out.exists() and not out.is_dir():
            raise ConfigurationError(f"--out {out}: exists and is not a folder")
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".llmtwin-probe-", dir=out)
        os.close(fd)
        os.unlink(probe)
    except (OSError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigurationError(f"--out {out}: cannot write there: {why}") from None


def check_fits(scenarios: Iterable[Scenario], copies: int = 1) -> None:
    """ConfigurationError if a scenario clearly needs more memory than this machine has;
    ``copies``: processes that each hold the whole run (``llmtwin up``'s services)."""
    for s in scenarios:
        check_memory(s, copies=copies)
