"""Accelerator descriptions (spec-sheet figures plus efficiency parameters) and their catalog."""

from llmtwin.hardware.catalog import HardwareCatalog, load_hardware_file
from llmtwin.hardware.spec import Efficiency, HardwareSpec, LinkSpec, Topology

__all__ = ["Efficiency", "HardwareCatalog", "HardwareSpec", "LinkSpec", "Topology", "load_hardware_file"]
