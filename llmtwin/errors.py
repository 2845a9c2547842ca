"""The one error base class of the twin and its small, greppable subclasses.

Every error a user can cause (unknown names, impossible configurations, malformed files) is a
:class:`TwinError`; the CLI prints ``str(err)`` on one line and exits with code 2.
"""

from __future__ import annotations


class TwinError(Exception):
    """Base of every error the twin raises on purpose."""

    def __str__(self) -> str:
        return f"llmtwin: {self.args[0] if self.args else type(self).__name__}"


class UnknownHardware(TwinError):
    """A hardware name that no catalog file defines."""


class UnknownModel(TwinError):
    """A model name that no catalog file defines."""


class UnknownEngine(TwinError):
    """An engine-overhead profile name that no catalog file defines."""


class CatalogFileError(TwinError):
    """A hardware, model or engine data file that is malformed or misses a field."""


class ConfigurationError(TwinError):
    """A configuration that cannot run: weights do not fit, TP does not divide the heads, ..."""


class CalibrationError(TwinError):
    """Measured data that cannot be read or fitted."""


class ScenarioError(TwinError):
    """A scenario file that is malformed or inconsistent."""


class UnknownTrace(TwinError):
    """A request-trace name that no trace directory holds."""


class ProtocolError(TwinError):
    """A bus message that is malformed, of an unknown type, or inconsistent with the protocol."""


class BusError(TwinError):
    """The message bus failed: no server, no responder, a request timed out."""


class ServiceFailure(TwinError):
    """A service (or a process of ``llmtwin up``) failed; the message says which and why."""
