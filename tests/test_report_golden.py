"""Golden outputs: the files of fixed runs stay byte-identical unless a change is intended.

The digests in ``tests/golden/digests.json`` were pinned from the outputs before the reporting
was rewritten for speed and constant memory (issue 11); a change that moves them must say why in
its commit. To re-pin after an intended change::

    LLMTWIN_UPDATE_GOLDEN=1 .venv/bin/pytest -q tests/test_report_golden.py

``summary.json`` is compared without its ``run`` key (wall-clock figures, never deterministic).
PNGs are compared for one case: they are deterministic for the locked matplotlib.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from llmtwin.cli.main import main

GOLDEN = Path(__file__).parent / "golden" / "digests.json"

PRESSURE = ["--set", "model=llama-3-70b", "--set", "cluster.tp=2"]
"""KV memory under pressure: preemptions, and (AcceLLM) requests still unfinished at the end."""

CASES: dict[str, tuple[list[str], bool]] = {
    "demo-colocated": (["demo", "--policy", "colocated"], True),
    "demo-disaggregated": (["demo", "--policy", "disaggregated"], False),
    "demo-accellm": (["demo", "--policy", "accellm"], False),
    "pressure-colocated": (["demo", "--policy", "colocated", *PRESSURE], False),
    "pressure-accellm": (["demo", "--policy", "accellm", *PRESSURE], False),
    "w1-colocated": (["w1"], True),
    "w1-accellm": (["w1", "--policy", "accellm"], False),
}
"""case -> (simulate arguments, whether its plots are compared too)."""

TEXT_FILES = ("requests.csv", "instances.csv", "summary.json")
PLOTS = ("latency_cdf.png", "kv_timeline.png", "role_timeline.png", "batch_sizes.png")


def digests(out: Path, plots: bool) -> dict[str, str]:
    found = {}
    for name in TEXT_FILES + (PLOTS if plots else ()):
        data = (out / name).read_bytes()
        if name == "summary.json":
            doc = json.loads(data)
            doc.pop("run")
            data = json.dumps(doc, indent=2).encode()
        found[name] = hashlib.sha256(data).hexdigest()
    return found


SLOW = {"w1-colocated", "w1-accellm"}
"""The issue's benchmark at full size (10,000 requests)."""


@pytest.mark.parametrize(
    "case", [pytest.param(c, marks=[pytest.mark.slow] if c in SLOW else []) for c in sorted(CASES)]
)
def test_outputs_match_the_golden_digests(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args, plots = CASES[case]
    flags = ["--quiet", "--out", str(tmp_path)] + ([] if plots else ["--no-plots"])
    assert main(["simulate", *args, *flags]) == 0
    capsys.readouterr()
    found = digests(tmp_path, plots)
    pinned = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    if os.environ.get("LLMTWIN_UPDATE_GOLDEN"):
        pinned[case] = found
        GOLDEN.write_text(json.dumps(dict(sorted(pinned.items())), indent=2) + "\n")
    assert found == pinned.get(case), f"{case}: outputs changed (re-pin only for an intended change)"
