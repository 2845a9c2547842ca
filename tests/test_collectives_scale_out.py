"""Collectives across nodes: the NIC's realised bandwidth and latency, rails, and their fit."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from llmtwin.calibrate.fit import collective_prediction, fit_collectives, spread_over_nodes
from llmtwin.calibrate.measured import CollectiveSample
from llmtwin.hardware import HardwareCatalog, HardwareSpec
from llmtwin.physics.collectives import collective_time, p2p_time

MB = 1e6


def with_network(hw: HardwareSpec, **fields: float) -> HardwareSpec:
    return dataclasses.replace(hw, efficiency=hw.efficiency.replace_numbers(fields))


def test_cross_node_transfer_runs_at_the_realised_nic_bandwidth() -> None:
    """A large send between nodes moves at NIC x scale_out_efficiency and pays the network latency."""
    hw = with_network(HardwareCatalog().get("h100-sxm"), scale_out_efficiency=0.5, scale_out_alpha_s=20e-6)
    size = 256 * MB
    t = p2p_time(hw, size, same_node=False)
    assert t == pytest.approx(size / (hw.link.scale_out_bandwidth_per_direction * 0.5), rel=5e-3)
    small = p2p_time(hw, 1.0, same_node=False) - p2p_time(hw, 1.0, same_node=True)
    assert small == pytest.approx(20e-6, rel=1e-3)


def test_cross_node_allreduce_uses_one_ring_per_nic_up_to_the_rails() -> None:
    """More devices per node spread the rings over more NICs, until the rails run out."""
    hw = with_network(HardwareCatalog().get("a100-80g"), scale_out_rails=4.0, scale_out_alpha_s=0.0)
    size = 512 * MB

    def t(world: int, per_node: int) -> float:
        return collective_time(spread_over_nodes(hw, per_node), "all_reduce", world, size)

    two_rails = t(4, 2) / (2 * 3 / 4)  # divided by the ring factor 2(n-1)/n
    four_rails = t(8, 4) / (2 * 7 / 8)
    assert two_rails / four_rails == pytest.approx(2.0, rel=0.02)
    assert t(16, 8) / (2 * 15 / 16) == pytest.approx(four_rails, rel=0.02)  # capped at 4 rails
    assert t(16, 8) > collective_time(hw, "all_reduce", 8, size)  # slower than one NVSwitch node


def test_scale_out_fields_are_recovered_from_synthetic_multi_node_timings() -> None:
    """Multi-node timings generated from a known network are fitted back to it."""
    base = HardwareCatalog().get("a100-80g")
    truth = {"scale_out_efficiency": 0.4, "scale_out_alpha_s": 25e-6, "scale_out_ring_efficiency": 0.6,
             "scale_out_rails": 3.0}  # fmt: skip
    true_hw = with_network(base, **truth)
    sizes = np.geomspace(4e3, 6.4e7, 40).astype(int)
    layout = [("all_reduce", 2, 1), ("all_reduce", 4, 2), ("all_reduce", 8, 4), ("all_reduce", 16, 8),
              ("send_recv", 2, 1)]  # fmt: skip
    samples = [CollectiveSample(name, int(s), world, per, 1.0) for name, world, per in layout for s in sizes]
    times = collective_prediction(true_hw, samples)
    samples = [dataclasses.replace(s, time_s=float(t)) for s, t in zip(samples, times, strict=True)]
    start = with_network(base, scale_out_efficiency=0.8, scale_out_alpha_s=10e-6, scale_out_rails=8.0)
    fitted = fit_collectives(start, samples).efficiency
    for name, value in truth.items():
        assert getattr(fitted, name) == pytest.approx(value, rel=0.02), name
