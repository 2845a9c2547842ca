"""Sizes a service accepts before it decodes anything (hostile or broken peers stay bounded)."""

from __future__ import annotations

CONTROL_MAX_BYTES = 64 * 1024
"""Largest control message accepted: hellos, heartbeats, run requests and controls, run
configurations, readies, collects, plan requests and replies (all far smaller). Grants, done
batches and chunks (results) may use the server's whole ``max_payload``."""

RESULT_MAX_BYTES = 1 << 30
"""Default bound of one run's results as they are reassembled (exports at the conductor, the
outcome at a controller): a flood of chunks is refused beyond it, memory stays bounded."""
