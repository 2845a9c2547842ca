"""Allreduce bus efficiency by group size: NVLS from 5 GPUs on Hopper, HCCL 2/4/8 cards, file checks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from llmtwin.catalog_files import DATA_DIR, read_toml
from llmtwin.errors import CatalogFileError
from llmtwin.hardware import HardwareCatalog, HardwareSpec, load_hardware_file
from llmtwin.hardware.spec import Efficiency
from llmtwin.physics.collectives import achieved_bus_bandwidth, bus_bandwidth, collective_time
from llmtwin.tomlw import dumps

RING_H100 = 0.8167
"""Ring busbw 365-370 GB/s at 2-8 H100s (midpoint) over 450 GB/s, NVIDIA/nccl issue 1455."""
NVLS_H100_8 = 1.064
"""nccl-tests plateau 478.9 GB/s over 450 on 8 H100s (NVLS)."""
MIB = 2**20


def single_efficiency(hw: HardwareSpec, efficiency: float) -> HardwareSpec:
    """``hw`` with one bus efficiency for every group size (no by-world table)."""
    eff = dataclasses.replace(
        hw.efficiency, allreduce_bus_efficiency=efficiency, allreduce_bus_efficiency_by_world=()
    )
    return dataclasses.replace(hw, efficiency=eff)


@pytest.mark.parametrize("world", [2, 3, 4])
def test_h100_allreduce_below_five_gpus_runs_at_ring_efficiency(world: int) -> None:
    """TP2-4 on H100 are priced exactly as a device with the ring efficiency at every size."""
    hw = HardwareCatalog().get("h100-sxm")
    ring = single_efficiency(hw, RING_H100)
    for size in (1 * MIB, 8 * MIB, 64 * MIB):
        assert collective_time(hw, "all_reduce", world, size) == collective_time(
            ring, "all_reduce", world, size
        )
    nvls = single_efficiency(hw, NVLS_H100_8)
    assert collective_time(hw, "all_reduce", world, 64 * MIB) > 1.2 * collective_time(
        nvls, "all_reduce", world, 64 * MIB
    )


def test_h100_allreduce_on_eight_gpus_runs_at_nvls_efficiency() -> None:
    """TP8 on H100 is priced with the 8-GPU NVLS plateau, as before the table existed."""
    hw = HardwareCatalog().get("h100-sxm")
    nvls = single_efficiency(hw, NVLS_H100_8)
    for size in (1 * MIB, 8 * MIB, 64 * MIB):
        assert collective_time(hw, "all_reduce", 8, size) == collective_time(nvls, "all_reduce", 8, size)


@pytest.mark.parametrize(
    ("name", "world", "measured_gb_s"),
    [
        # NVIDIA/nccl issue 1455 (8 x H100): ring 365-370 GB/s at 2-8 GPUs, NVLS from 5 GPUs
        ("h100-sxm", 2, 367.5),
        ("h100-sxm", 4, 367.5),
        ("h100-sxm", 5, 420.0),
        ("h100-sxm", 6, 440.0),
        ("h100-sxm", 7, 460.0),
        ("h100-sxm", 8, 478.9),  # nccl-tests, Azure AI-benchmarking-guide
        ("h200", 4, 367.5),
        ("h200", 8, 480.0),
        # HCCL busbw on 910B, gameofdimension/limulidae
        ("ascend-910b2", 2, 18.0),
        ("ascend-910b2", 4, 30.0),
        ("ascend-910b2", 8, 72.0),
    ],
)
def test_plateau_busbw_matches_measurement_at_each_group_size(
    name: str, world: int, measured_gb_s: float
) -> None:
    """Raw bandwidth x the group size's bus efficiency gives the measured plateau busbw within 1%."""
    hw = HardwareCatalog().get(name)
    plateau = bus_bandwidth(hw, world) * hw.efficiency.allreduce_bus_efficiency_at(world)
    assert plateau / 1e9 == pytest.approx(measured_gb_s, rel=0.01)


def test_unmeasured_three_card_ascend_lies_between_the_two_and_four_card_measurements() -> None:
    """3 x 910B takes the 4-card efficiency: 20 GB/s busbw, between the measured 18 and 30."""
    hw = HardwareCatalog().get("ascend-910b2")
    plateau = bus_bandwidth(hw, 3) * hw.efficiency.allreduce_bus_efficiency_at(3) / 1e9
    assert 18.0 < plateau < 30.0


def test_lookup_takes_the_largest_world_not_above_the_group() -> None:
    """Below the first entry the scalar applies; otherwise the entry with the largest world <= n."""
    eff = Efficiency(allreduce_bus_efficiency=0.5, allreduce_bus_efficiency_by_world=((3, 0.6), (6, 0.9)))
    got = [eff.allreduce_bus_efficiency_at(n) for n in (2, 3, 5, 6, 7, 64)]
    assert got == [0.5, 0.6, 0.6, 0.9, 0.9, 0.9]
    assert Efficiency(allreduce_bus_efficiency=0.5).allreduce_bus_efficiency_at(8) == 0.5


def test_achieved_bandwidth_uses_the_group_size_efficiency() -> None:
    """achieved_bus_bandwidth = raw x efficiency(world) x allreduce_realised."""
    hw = HardwareCatalog().get("h100-sxm")
    realised = hw.efficiency.allreduce_realised
    assert achieved_bus_bandwidth(hw, 4) == pytest.approx(450e9 * RING_H100 * realised)
    assert achieved_bus_bandwidth(hw, 8) == pytest.approx(450e9 * NVLS_H100_8 * realised)


def test_file_without_a_table_keeps_one_efficiency() -> None:
    """The A100 file has no table: every group size uses its 0.77."""
    eff = HardwareCatalog().get("a100-80g").efficiency
    assert eff.allreduce_bus_efficiency_by_world == ()
    assert {eff.allreduce_bus_efficiency_at(n) for n in range(2, 17)} == {0.77}


def test_written_hardware_file_with_a_table_loads_back_unchanged(tmp_path: Path) -> None:
    """A hardware file holding the table, written by the TOML writer (as calibrate does), loads the same."""
    path = tmp_path / "h100-sxm.toml"
    path.write_text(dumps(read_toml(DATA_DIR / "hardware" / "h100-sxm.toml")), encoding="utf-8")
    assert load_hardware_file(path) == HardwareCatalog().get("h100-sxm")


def write_with_table(tmp_path: Path, table: str) -> Path:
    """A copy of h100-sxm.toml whose by-world line is ``allreduce_bus_efficiency_by_world = <table>``."""
    text = (DATA_DIR / "hardware" / "h100-sxm.toml").read_text(encoding="utf-8")
    lines = [
        f"allreduce_bus_efficiency_by_world = {table}" if ln.startswith("allreduce_bus_efficiency_by_world")
        else ln
        for ln in text.splitlines()
    ]  # fmt: skip
    path = tmp_path / "h100-sxm.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_valid_custom_table_is_read_as_pairs(tmp_path: Path) -> None:
    """[[world, efficiency], ...] becomes a tuple of (int, float) pairs; integer efficiencies allowed."""
    hw = load_hardware_file(write_with_table(tmp_path, "[[2, 0.8], [4, 1]]"))
    assert hw.efficiency.allreduce_bus_efficiency_by_world == ((2, 0.8), (4, 1.0))


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("0.82", "must be an array of \\[world, efficiency\\] pairs"),
        ('"2:0.82"', "must be an array"),
        ("[0.82]", "is not a \\[world, efficiency\\] pair"),
        ("[[2, 0.82, 3]]", "is not a \\[world, efficiency\\] pair"),
        ("[[1, 0.82]]", "world 1 .* must be an integer >= 2"),
        ("[[2.0, 0.82]]", "world 2.0 .* must be an integer >= 2"),
        ("[[true, 0.82]]", "world True .* must be an integer >= 2"),
        ("[[2, 0.0]]", "efficiency 0.0 .* must be a number > 0"),
        ("[[2, -0.5]]", "efficiency -0.5 .* must be a number > 0"),
        ('[[2, "0.8"]]', "efficiency '0.8' .* must be a number > 0"),
        ("[[2, 0.8], [2, 0.9]]", "worlds must increase, but 2 follows 2"),
        ("[[5, 0.9], [2, 0.8]]", "worlds must increase, but 2 follows 5"),
    ],
)
def test_malformed_table_names_the_file_and_field(tmp_path: Path, table: str, message: str) -> None:
    """A malformed by-world table raises CatalogFileError naming the file, the field and the fault."""
    path = write_with_table(tmp_path, table)
    with pytest.raises(CatalogFileError, match=message) as info:
        load_hardware_file(path)
    assert str(path) in str(info.value)
    assert "efficiency.allreduce_bus_efficiency_by_world" in str(info.value)
