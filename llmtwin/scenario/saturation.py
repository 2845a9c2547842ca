"""A back-of-envelope saturation load for a scenario, from the device physics and its engine profile.

Used to place the scenarios' load ranges (see docs/scenarios.md), not as a result: the simulation
decides where a policy really saturates. One instance serves a request with one whole-prompt
prefill plus ``output_tokens`` decode steps in a batch of ``B`` sequences, each step costing it
``step_time(B) / B``. ``B`` is the largest batch the KV cache (at the workload's mean context)
and ``engine.max_batch_seqs`` allow, i.e. the cheapest per-token decode the instance can reach.
Then the cluster saturates near ``instances / mean(prefill + output * step_time(B) / B)``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from llmtwin.hardware import HardwareCatalog
from llmtwin.models import ModelCatalog
from llmtwin.physics.graph import BatchShape
from llmtwin.physics.overhead import EngineCatalog
from llmtwin.physics.precision import Precision
from llmtwin.physics.step import StepModel
from llmtwin.scenario.spec import Scenario
from llmtwin.workload.generate import generate_requests

LIGHT_DECODE_BATCH = 32
"""Sequences in the decode step quoted as the unloaded TBT."""


@dataclass(frozen=True, slots=True)
class SaturationEstimate:
    """Per-request service demand on one instance and the load that saturates the cluster."""

    kv_capacity_tokens: int
    """KV-cache tokens one instance holds."""
    decode_batch: int
    """Sequences per decode step at saturation (KV- or max_batch_seqs-bound)."""
    decode_step_s: float
    """Seconds of one decode step at that batch and the mean context."""
    prefill_s_mean: float
    """Mean seconds of one request's prefill, alone on the instance."""
    decode_s_mean: float
    """Mean seconds of instance time one request's decode takes (its share of batched steps)."""
    saturation_rps: float
    """Cluster arrival rate at which the instances would be busy all the time."""
    median_prefill_s: float
    """Seconds to prefill the workload's median prompt alone (an unloaded TTFT)."""
    light_decode_step_s: float
    """Seconds of a decode step of 32 sequences at the mean context (an unloaded TBT)."""


def estimate_saturation(s: Scenario, sample: int = 2000) -> SaturationEstimate:
    """Estimate from ``sample`` requests of the scenario's own workload (same seed)."""
    hw = HardwareCatalog().get(s.cluster.hardware)
    model = ModelCatalog().get(s.model)
    engine = EngineCatalog().get(s.cluster.engine)
    step = StepModel(hw, model, s.cluster.tp, Precision.parse(s.cluster.precision), engine)
    workload = dataclasses.replace(s.workload, requests=sample, duration_s=None)
    reqs = generate_requests(workload, s.seed, model.max_context)
    prompt = np.array([r.prompt_tokens for r in reqs], dtype=np.float64)
    output = np.array([r.output_tokens for r in reqs], dtype=np.float64)
    # A decoding sequence holds its prompt plus, on average, half its output.
    mean_context = float(np.mean(prompt + output / 2))
    capacity = step.kv_capacity_tokens()
    batch = max(1, min(s.engine.max_batch_seqs, int(capacity // mean_context)))
    step_s = step.time(BatchShape.decode(batch, round(mean_context)))
    prefill = np.array([step.time(BatchShape.prefill(1, int(p))) for p in prompt])
    decode = output * step_s / batch
    demand_s = float(np.mean(prefill + decode))
    return SaturationEstimate(
        kv_capacity_tokens=capacity,
        decode_batch=batch,
        decode_step_s=step_s,
        prefill_s_mean=float(prefill.mean()),
        decode_s_mean=float(decode.mean()),
        saturation_rps=s.cluster.instances / demand_s,
        median_prefill_s=step.time(BatchShape.prefill(1, int(np.median(prompt)))),
        light_decode_step_s=step.time(BatchShape.decode(LIGHT_DECODE_BATCH, round(mean_context))),
    )
