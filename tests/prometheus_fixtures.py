"""Test helpers for Prometheus: find its binaries (skip, or fail under CI), serve a registry over HTTP."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_client import CollectorRegistry

from services.exposition import CLASSIC_CONTENT_TYPE, classic_text


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


@contextmanager
def serve_registry(registry: CollectorRegistry) -> Iterator[str]:
    """Serve ``registry`` on /metrics (classic text) from a thread; yields its host:port."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = classic_text(registry)
            self.send_response(200)
            self.send_header("Content-Type", CLASSIC_CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
