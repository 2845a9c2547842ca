"""Test helpers for Prometheus: find its binaries (skip, or fail under CI)."""

from __future__ import annotations

import os
import shutil

import pytest


def require(binary: str) -> str:
    """The path of ``prometheus`` or ``promtool``. Missing: the test skips saying how to install
    it -- except under CI (``CI=true``), where scripts/bootstrap.sh installs it, so it fails."""
    path = shutil.which(binary)
    if path is None:
        reason = (
            f"`{binary}` is not installed (scripts/prometheus-install.sh installs Debian's prometheus "
            "package as root; otherwise `apt-get install prometheus` or put it on PATH)"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return path
