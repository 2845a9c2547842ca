"""Load hardware descriptions from TOML files (shipped under llmtwin/data/hardware/, or the user's).

File format (units in key names; every figure's source under ``[sources]``)::

    name = "a100-80g"                  # must equal the file name without .toml
    description = "NVIDIA A100 SXM 80GB"
    notes = "..."                      # optional free text
    [compute]                          # dense peaks; omit a dtype the device lacks
    units = 108                        # SMs / CUs / AI cores / TensorCores
    bf16_tflops = 312.0
    fp16_tflops = 312.0
    int8_tops = 624.0
    fp8_tflops = 0                     # or omit
    [memory]
    hbm_gb = 80.0                      # decimal GB
    hbm_tb_s = 2.039
    l2_mib = 40.0
    l2_tb_s = 7.2
    [link]
    topology = "nvswitch"              # nvswitch | full_mesh | torus2d | torus3d | ring
    gb_s_per_direction = 300.0         # aggregate per device
    peer_gb_s_per_direction = 300.0    # one link to one peer
    latency_us = 1.0
    devices_per_node = 8
    [efficiency]                       # optional; any field of llmtwin.hardware.spec.Efficiency
    gemm_max = 0.86
    allreduce_bus_efficiency_by_world = [[2, 0.82], [5, 0.93]]   # [world, efficiency] pairs
    [price]                            # optional
    usd_per_hour = 1.5
    [uncertainty]                      # optional
    transfer = 0.15                    # band widening when the bands are another device's
    [bands]                            # written by llmtwin calibrate (llmtwin/physics/bands.py)
    gemm = [[8, 65, 512, 0.93, 1.05, 120]]   # [tp, lo, hi, low, high, points] per region
    [host]                             # optional: the CPU driving the devices
    cpu = "2 x AMD EPYC 7742 (DGX A100)"
    single_thread_relative = 1.0       # single-thread speed relative to that CPU
    [sources]                          # keys name a field present in the file
    "memory.hbm_tb_s" = "[V] https://..."

Unknown tables or fields are errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from llmtwin.catalog_files import FieldReader, find_files, read_toml
from llmtwin.errors import CatalogFileError, UnknownHardware
from llmtwin.hardware.spec import Efficiency, HardwareSpec, LinkSpec
from llmtwin.physics.bands import BandTable, read_band_table

_TOPOLOGIES = ("nvswitch", "full_mesh", "torus2d", "torus3d", "ring")
_COMPUTE_KEYS = {"bf16_tflops": "bf16", "fp16_tflops": "fp16", "fp8_tflops": "fp8", "int8_tops": "int8"}
_EFFICIENCY_FIELDS = {f.name for f in dataclasses.fields(Efficiency)}
_BY_WORLD = "allreduce_bus_efficiency_by_world"
"""The one efficiency field that is a table ([world, efficiency] pairs), not a number."""
_SECTION_FIELDS: dict[str, frozenset[str]] = {
    "compute": frozenset({*_COMPUTE_KEYS, "units"}),
    "memory": frozenset({"hbm_gb", "hbm_tb_s", "l2_mib", "l2_tb_s"}),
    "link": frozenset(
        {
            "topology",
            "gb_s_per_direction",
            "peer_gb_s_per_direction",
            "latency_us",
            "devices_per_node",
            "scale_out_gb_s_per_direction",
        }
    ),
    "efficiency": frozenset(_EFFICIENCY_FIELDS),
    "price": frozenset({"usd_per_hour", "usd_purchase", "tdp_w"}),
    "host": frozenset({"cpu", "single_thread_relative"}),
    "uncertainty": frozenset({"transfer"}),
}
_TOP_LEVEL = frozenset({"name", "description", "notes", "sources", "bands", *_SECTION_FIELDS})
REFERENCE_HARDWARE = "a100-80g"
"""The calibrated device whose bands (and kernel-shape defaults) an uncalibrated device inherits."""
DEFAULT_TRANSFER_UNCERTAINTY = 0.25
"""[E] Band widening of a device without its own calibration that states none: the held-out H100
check of the A100-fitted shape found 15% median per-op error; 0.25 leaves room for devices whose
kernels differ more (docs/device-model.md, section 5b)."""


def load_hardware_file(path: Path) -> HardwareSpec:
    """Parse and validate one hardware file."""
    root = FieldReader(path, read_toml(path))
    _check_known_fields(root)
    name = root.text("name")
    if name != path.stem:
        raise CatalogFileError(f"{path}: field 'name' is {name!r} but the file is named {path.stem!r}")
    root.text("notes", default="")
    compute = root.sub("compute")
    peaks = {
        dtype: compute.number(key, positive=False) * 1e12
        for key, dtype in _COMPUTE_KEYS.items()
        if compute.has(key)
    }
    peaks = {k: v for k, v in peaks.items() if v > 0}
    if "bf16" not in peaks and "fp16" not in peaks:
        raise CatalogFileError(f"{path}: field 'compute.bf16_tflops' (or fp16_tflops) is missing")
    mem = root.sub("memory")
    link = root.sub("link")
    efficiency = _efficiency(root.sub("efficiency", required=False))
    price = root.sub("price", required=False)
    host = root.sub("host", required=False)
    own_bands = root.has("bands")
    bands = read_band_table(path, root.sub("bands").table) if own_bands else _reference_bands()
    transfer = root.sub("uncertainty", required=False).number(
        "transfer", default=0.0 if own_bands else DEFAULT_TRANSFER_UNCERTAINTY, positive=False
    )
    return HardwareSpec(
        name=name,
        description=root.text("description", default=name),
        peak_flops=peaks,
        hbm_capacity=mem.number("hbm_gb") * 1e9,
        hbm_bandwidth=mem.number("hbm_tb_s") * 1e12,
        l2_capacity=mem.number("l2_mib") * 2**20,
        l2_bandwidth=mem.number("l2_tb_s") * 1e12,
        link=LinkSpec(
            topology=link.text("topology", choices=_TOPOLOGIES),  # type: ignore[arg-type]
            bandwidth_per_direction=link.number("gb_s_per_direction") * 1e9,
            peer_bandwidth_per_direction=link.number("peer_gb_s_per_direction") * 1e9,
            latency_s=link.number("latency_us", positive=False) * 1e-6,
            devices_per_node=link.integer("devices_per_node"),
            scale_out_bandwidth_per_direction=link.number("scale_out_gb_s_per_direction", default=50.0) * 1e9,
        ),
        efficiency=efficiency,
        compute_units=compute.integer("units", default=100),
        bands=bands,
        transfer_uncertainty=transfer,
        host_cpu_speed=host.number("single_thread_relative", default=1.0),
        host_cpu=host.text("cpu", default=""),
        usd_per_hour=price.optional_number("usd_per_hour"),
        usd_purchase=price.optional_number("usd_purchase"),
        tdp_w=price.optional_number("tdp_w"),
        sources=_sources(root),
    )


@functools.cache
def _reference_bands() -> BandTable:
    """The [bands] of the shipped reference device (empty if it has none)."""
    path = find_files("hardware").get(REFERENCE_HARDWARE)
    if path is None:
        return BandTable()
    table = read_toml(path).get("bands", {})
    return read_band_table(path, table) if isinstance(table, dict) else BandTable()


def _efficiency(table: FieldReader) -> Efficiency:
    """The [efficiency] table: numbers, and the by-world allreduce table."""
    numbers = {k: table.number(k, positive=False) for k in table.table if k != _BY_WORLD}
    by_world = _world_pairs(table, _BY_WORLD) if table.has(_BY_WORLD) else ()
    return Efficiency(allreduce_bus_efficiency_by_world=by_world).replace_numbers(numbers)


def _world_pairs(table: FieldReader, key: str) -> tuple[tuple[int, float], ...]:
    """An array of [world, efficiency] pairs: integer worlds >= 2, increasing; efficiencies > 0."""
    where = f"{table.path}: field '{table.prefix}{key}'"
    value: Any = table.table[key]
    if not isinstance(value, list):
        raise CatalogFileError(f"{where} must be an array of [world, efficiency] pairs, got {value!r}")
    pairs: list[tuple[int, float]] = []
    for entry in value:
        if not (isinstance(entry, list) and len(entry) == 2):
            raise CatalogFileError(f"{where}: entry {entry!r} is not a [world, efficiency] pair")
        world, eff = entry
        if isinstance(world, bool) or not isinstance(world, int) or world < 2:
            raise CatalogFileError(f"{where}: world {world!r} in {entry!r} must be an integer >= 2")
        if isinstance(eff, bool) or not isinstance(eff, int | float) or not eff > 0:
            raise CatalogFileError(f"{where}: efficiency {eff!r} in {entry!r} must be a number > 0")
        if pairs and world <= pairs[-1][0]:
            raise CatalogFileError(f"{where}: worlds must increase, but {world} follows {pairs[-1][0]}")
        pairs.append((world, float(eff)))
    return tuple(pairs)


def _check_known_fields(root: FieldReader) -> None:
    """Reject unknown top-level keys and unknown fields inside the known tables."""
    unknown = set(root.table) - _TOP_LEVEL
    if unknown:
        raise CatalogFileError(f"{root.path}: unknown field(s): {sorted(unknown)}")
    for section, allowed in _SECTION_FIELDS.items():
        table = root.sub(section, required=False).table
        unknown = set(table) - allowed
        if unknown:
            raise CatalogFileError(f"{root.path}: unknown field(s) in [{section}]: {sorted(unknown)}")


def _sources(root: FieldReader) -> dict[str, str]:
    """The [sources] table; every key must name a field the file sets (catches typos)."""
    sources = root.strings("sources")
    for key in sources:
        section, _, field = key.partition(".")
        table = root.table.get(section)
        if not isinstance(table, dict) or field not in table:
            raise CatalogFileError(f"{root.path}: field 'sources.\"{key}\"' names no field set in this file")
    return sources


class HardwareCatalog:
    """Named hardware descriptions: the shipped files plus user directories."""

    def __init__(self, extra_dirs: Iterable[Path] = ()) -> None:
        self._files = find_files("hardware", extra_dirs)
        self._cache: dict[str, HardwareSpec] = {}

    def names(self) -> list[str]:
        return sorted(self._files)

    def get(self, name: str) -> HardwareSpec:
        """The spec called ``name``; a path to a .toml file also works."""
        if name.endswith(".toml"):
            return load_hardware_file(Path(name))
        if name not in self._files:
            raise UnknownHardware(f"unknown hardware {name!r}; known: {', '.join(self.names())}")
        if name not in self._cache:
            self._cache[name] = load_hardware_file(self._files[name])
        return self._cache[name]
