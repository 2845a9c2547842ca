"""What every component of one run knows about the cluster: sizes, latencies, the KV link.

Built once per run from the scenario (:func:`llmtwin.cluster.run.build_components`) and handed
to the policy, the balancer and every instance through their constructors.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmtwin.errors import ConfigurationError
from llmtwin.hardware.spec import HardwareSpec
from llmtwin.physics.collectives import p2p_time
from llmtwin.scenario.spec import EngineConfig, FaultSpec

LINK_MODES = ("auto", "scale_up", "scale_out")


@dataclass(frozen=True, slots=True)
class LinkModel:
    """Time to move KV cache between two instances (each a TP group of ``tp`` devices).

    Device ``d`` of one instance sends its KV shard to device ``d`` of the other, all ``tp``
    pairs in parallel, so a transfer of ``total_bytes`` takes one point-to-point transfer of
    ``total_bytes / tp`` over the link the two devices share: the scale-up fabric (NVLink, HCCS)
    when both instances sit in one node, else the scale-out NIC.
    """

    hw: HardwareSpec
    tp: int
    mode: str = "auto"

    def __post_init__(self) -> None:
        if self.mode not in LINK_MODES:
            raise ConfigurationError(
                f"cluster.inter_instance_link must be one of {', '.join(LINK_MODES)}, got {self.mode!r}"
            )

    @property
    def instances_per_node(self) -> int:
        return self.hw.link.devices_per_node // self.tp

    def same_node(self, a: int, b: int) -> bool:
        if self.mode != "auto":
            return self.mode == "scale_up"
        per = self.instances_per_node
        return per >= 2 and a // per == b // per

    def time(self, a: int, b: int, total_bytes: float) -> float:
        """Seconds to move ``total_bytes`` (all devices together) from instance a to b."""
        return p2p_time(self.hw, total_bytes / self.tp, self.same_node(a, b))

    def layerwise_landing(
        self, a: int, b: int, total_bytes: float, start_s: float, end_s: float, layers: int
    ) -> float:
        """When the last layer's KV lands if each layer is sent as soon as the prefill computed it.

        Layer ``l`` is ready at ``start + (l+1) * T/L`` and the link sends one layer at a time, so
        the last one lands at ``max(end + tau, start + T/L + L * tau)`` (tau: one layer's transfer):
        compute-bound links add one layer's transfer, slower links stream for ``L * tau``.
        """
        tau = self.time(a, b, total_bytes / layers)
        return max(end_s + tau, start_s + (end_s - start_s) / layers + layers * tau)


@dataclass(frozen=True, slots=True)
class ClusterContext:
    """The sizes every component of one run shares."""

    instances: int
    tp: int
    layers: int
    capacity_blocks: int
    """KV blocks per instance."""
    engine: EngineConfig
    routing_latency_s: float
    kv_bytes_per_token: float
    """KV bytes one token occupies on the whole instance (all devices)."""
    link: LinkModel
    faults: tuple[FaultSpec, ...] = ()
    """The scenario's simulated failures: every component knows them from the start (a failure
    detector's schedule), so each can tell whether an instance is down at a given time."""

    def down(self, iid: int, t: float) -> bool:
        """Whether instance ``iid`` is down at virtual time ``t`` (down from ``at_s`` on, up again
        from ``recover_s`` on)."""
        return any(
            f.instance == iid and f.at_s <= t and (f.recover_s is None or t < f.recover_s)
            for f in self.faults
        )

    def faults_of(self, iid: int) -> list[FaultSpec]:
        """Instance ``iid``'s failures in time order."""
        return sorted((f for f in self.faults if f.instance == iid), key=lambda f: f.at_s)

    @property
    def block_tokens(self) -> int:
        return self.engine.block_size_tokens

    @property
    def watermark_blocks(self) -> int:
        return int(self.engine.watermark * self.capacity_blocks)

    def blocks(self, tokens: int) -> int:
        return -(-tokens // self.engine.block_size_tokens)

    def kv_bytes(self, tokens: int) -> float:
        return tokens * self.kv_bytes_per_token

    def fits(self, prompt_tokens: int, output_tokens: int) -> str | None:
        """Why a request can never run on one instance (its full KV exceeds it), or None."""
        final = prompt_tokens + output_tokens - 1
        if self.blocks(final) > self.capacity_blocks - self.watermark_blocks:
            return FAIL_TOO_LONG
        return None


FAIL_TOO_LONG = "kv_capacity: prompt + output tokens exceed one instance's KV cache"
"""Failure reason of a request that could never run (one fixed text, so summaries can count it)."""


def instance_id(i: int) -> str:
    """Component id of instance ``i``."""
    return f"instance-{i}"


BALANCER = "balancer"
GENERATOR = "generator"
