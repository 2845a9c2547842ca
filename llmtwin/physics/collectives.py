"""Alpha-beta cost of collectives on a scale-up topology.

    t = ((alpha + steps * link_latency)^q + t_bw^q)^(1/q)
    t_bw = algorithm_bytes / (raw_bus_bandwidth * allreduce_bus_efficiency(world) * allreduce_realised)

``alpha`` (small-message latency on top of the per-hop link latency: a small-message measurement
over n devices gives ``alpha = t_small - 2(n-1) * link_latency``) and the plateau bus efficiency are
measurements of the device (nccl-tests style, in its hardware file; the efficiency may depend on
the group size, ``Efficiency.allreduce_bus_efficiency_by_world``, as NVLS does on Hopper);
``allreduce_realised`` (the fraction of that plateau which serving-sized messages reach) and
``q`` (how latency and bandwidth terms combine: q = 1 is the classic sum, q < 1 adds the protocol
hand-over penalty seen between 1 and 16 MB) are fitted kernel-shape parameters. The bytes each
rank moves are the textbook ones: 2(n-1)/n * S for a ring allreduce, (n-1)/n * S for an
allgather.

A group larger than a node (``world > link.devices_per_node``, which then counts the group's
devices in each node) runs its rings through the scale-out NICs: one ring per NIC, ``min(r,
scale_out_rails)`` of them for ``r`` devices per node, each at ``scale_out_efficiency x
scale_out_ring_efficiency`` of the NIC's bandwidth, and every ring pass crosses the network
(``scale_out_alpha_s``) once more. These are properties of the cluster's network, fitted on
multi-node measurements where there are some (docs/device-model.md, section 3).
"""

from __future__ import annotations

import math
from typing import Literal, TypeVar

import numpy as np
import numpy.typing as npt

from llmtwin.hardware.spec import HardwareSpec

Collective = Literal["all_reduce", "all_gather", "send_recv"]
Num = TypeVar("Num", float, npt.NDArray[np.float64])


def bus_bandwidth(hw: HardwareSpec, world: int) -> float:
    """Raw bytes/s a ring step can use per direction for a group of ``world`` devices.

    NVSwitch: every device drives its full aggregate bandwidth into the switch. Full mesh (HCCS,
    Infinity Fabric): RCCL/HCCL spread the traffic over the direct links to all ``world - 1`` other
    members (8 x 910B measures 72 GB/s busbw and 4 x 910B 30 GB/s: the 7:3 ratio of their link
    counts). Ring: one neighbour link per direction. Torus: a ring per dimension, each over one
    neighbour link in both directions. A group spanning nodes is limited by the scale-out NIC.
    """
    link = hw.link
    if world > link.devices_per_node:
        return link.scale_out_bandwidth_per_direction
    if link.topology == "nvswitch":
        return link.bandwidth_per_direction
    if link.topology == "full_mesh":
        return link.peer_bandwidth_per_direction * (world - 1)
    if link.topology == "ring":
        return link.peer_bandwidth_per_direction
    dims = 2 if link.topology == "torus2d" else 3
    used = min(dims, max(1, math.ceil(math.log2(world))))
    return link.peer_bandwidth_per_direction * 2 * used  # bidirectional ring per used dimension


def achieved_bus_bandwidth(hw: HardwareSpec, world: int) -> float:
    """Bytes/s per direction an allreduce of serving-sized messages over ``world`` devices reaches."""
    e = hw.efficiency
    if world > hw.link.devices_per_node:
        return scale_out_bus_bandwidth(hw)
    return bus_bandwidth(hw, world) * e.allreduce_bus_efficiency_at(world) * e.allreduce_realised


def scale_out_bus_bandwidth(hw: HardwareSpec) -> float:
    """Bus bytes/s per direction of a ring collective spanning nodes, with
    ``link.devices_per_node`` of the group's devices in each node (one ring per NIC used)."""
    e, link = hw.efficiency, hw.link
    rails = min(float(link.devices_per_node), e.scale_out_rails)
    return (
        link.scale_out_bandwidth_per_direction * e.scale_out_efficiency * e.scale_out_ring_efficiency * rails
    )


def ring_collective_time(hw: HardwareSpec, op: Collective, world: int, size_bytes: Num) -> Num:
    """Seconds for an allreduce or allgather of ``size_bytes`` per rank (arrays allowed)."""
    e = hw.efficiency
    if op == "all_reduce":
        factor, steps = 2.0 * (world - 1) / world, 2 * (world - 1)
    else:
        factor, steps = (world - 1) / world, world - 1
    latency = e.allreduce_alpha_s + steps * hw.link.latency_s
    if world > hw.link.devices_per_node:
        latency += (2.0 if op == "all_reduce" else 1.0) * e.scale_out_alpha_s
    t_bw = factor * size_bytes / achieved_bus_bandwidth(hw, world)
    q = e.allreduce_sharpness
    out: Num = (latency**q + t_bw**q) ** (1.0 / q)
    return out


def collective_time(hw: HardwareSpec, op: Collective, world: int, size_bytes: float) -> float:
    """Seconds for one collective over ``world`` devices with a ``size_bytes`` payload per rank."""
    if world <= 1 or size_bytes <= 0:
        return 0.0
    if op == "send_recv":
        return p2p_time(hw, size_bytes, same_node=world <= hw.link.devices_per_node)
    return ring_collective_time(hw, op, world, size_bytes)


def p2p_time(hw: HardwareSpec, size_bytes: float, same_node: bool = True) -> float:
    """Seconds to send ``size_bytes`` from one device to another (KV copies between instances)."""
    if size_bytes <= 0:
        return 0.0
    return p2p_time_array(hw, size_bytes, same_node)


def p2p_time_array(hw: HardwareSpec, size_bytes: Num, same_node: bool = True) -> Num:
    """:func:`p2p_time` without the zero-size guard, so it also takes arrays."""
    link, e = hw.link, hw.efficiency
    if not same_node:
        bw = link.scale_out_bandwidth_per_direction * e.scale_out_efficiency
        return e.p2p_alpha_s + link.latency_s + e.scale_out_alpha_s + size_bytes / bw
    bw = link.bandwidth_per_direction if link.topology == "nvswitch" else link.peer_bandwidth_per_direction
    return e.p2p_alpha_s + link.latency_s + size_bytes / (bw * e.p2p_efficiency)
