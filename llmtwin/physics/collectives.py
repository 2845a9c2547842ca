"""Alpha-beta cost of collectives on a scale-up topology.

time = alpha + steps * link_latency + algorithm_bytes / achieved_bandwidth

``alpha`` (synchronisation and protocol) and the achieved fraction of link bandwidth are device
efficiency parameters, fitted on measured allreduce timings. The bytes each rank must move are
the textbook ones: 2(n-1)/n * S for a ring allreduce, (n-1)/n * S for an allgather.
"""

from __future__ import annotations

import math
from typing import Literal

from llmtwin.hardware.spec import HardwareSpec

Collective = Literal["all_reduce", "all_gather", "send_recv"]


def bus_bandwidth(hw: HardwareSpec, world: int) -> float:
    """Bytes/s a ring step achieves per direction for a group of ``world`` devices.

    NVSwitch: every device drives its full aggregate bandwidth into the switch. Full mesh (HCCS,
    Infinity Fabric): RCCL/HCCL spread the traffic over the direct links to all ``world - 1`` other
    members (8 x 910B measures 72 GB/s busbw and 4 x 910B 30 GB/s: the 7:3 ratio of their link
    counts). Ring: one neighbour link per direction. Torus: a ring per dimension, each over one
    neighbour link in both directions.
    """
    link = hw.link
    if world > link.devices_per_node:
        raw = link.scale_out_bandwidth_per_direction
    elif link.topology == "nvswitch":
        raw = link.bandwidth_per_direction
    elif link.topology == "full_mesh":
        raw = link.peer_bandwidth_per_direction * (world - 1)
    elif link.topology == "ring":
        raw = link.peer_bandwidth_per_direction
    else:
        dims = 2 if link.topology == "torus2d" else 3
        used = min(dims, max(1, math.ceil(math.log2(world)) if world > 1 else 1))
        raw = link.peer_bandwidth_per_direction * 2 * used  # bidirectional ring per used dimension
    return raw * hw.efficiency.allreduce_bus_efficiency


def collective_time(hw: HardwareSpec, op: Collective, world: int, size_bytes: float) -> float:
    """Seconds for one collective over ``world`` devices with a ``size_bytes`` payload per rank."""
    if world <= 1 or size_bytes <= 0:
        return 0.0
    eff = hw.efficiency
    if op == "send_recv":
        bw = _p2p_bandwidth(hw, world) * eff.p2p_efficiency
        return eff.p2p_alpha_s + hw.link.latency_s + size_bytes / bw
    factor = 2.0 * (world - 1) / world if op == "all_reduce" else (world - 1) / world
    steps = 2 * (world - 1) if op == "all_reduce" else world - 1
    return eff.allreduce_alpha_s + steps * hw.link.latency_s + factor * size_bytes / bus_bandwidth(hw, world)


def p2p_time(hw: HardwareSpec, size_bytes: float, same_node: bool = True) -> float:
    """Seconds to send ``size_bytes`` from one device to another (KV copies between instances)."""
    if size_bytes <= 0:
        return 0.0
    bw = _p2p_bandwidth(hw, 2) if same_node else hw.link.scale_out_bandwidth_per_direction
    return hw.efficiency.p2p_alpha_s + hw.link.latency_s + size_bytes / (bw * hw.efficiency.p2p_efficiency)


def _p2p_bandwidth(hw: HardwareSpec, world: int) -> float:
    link = hw.link
    if world > link.devices_per_node:
        return link.scale_out_bandwidth_per_direction
    if link.topology == "nvswitch":
        return link.bandwidth_per_direction
    return link.peer_bandwidth_per_direction
