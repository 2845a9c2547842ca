"""How the conductor ends a run early: the service to blame, and why."""

from __future__ import annotations


class RunFailed(Exception):
    """Ends a run early; carries the service to blame (empty if none) and why."""

    def __init__(self, service: str, message: str) -> None:
        super().__init__(message)
        self.service, self.message = service, message
