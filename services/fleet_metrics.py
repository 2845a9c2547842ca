"""The simulated fleet's metrics, built from the catalogue and updated from per-window records.

One :class:`FleetMetrics` per service process, on the service's registry: a device service
exports the vLLM-compatible and per-instance families of the instances it leads
(:meth:`observe_instance`), the balancer the cluster families (:meth:`observe_cluster`), the
conductor the run and pacing families (:meth:`observe_conductor`). Which families, their names,
types, labels and buckets all come from :mod:`llmtwin.observe.families`; the records from
:mod:`llmtwin.observe.observations`.

Values are plain numbers turned into samples on scrape (no lock per update: the services update
and serve /metrics on one event loop thread). :meth:`start_run` clears every series, so the totals
after a run are that run's (Prometheus sees a counter reset, which ``rate()`` handles).
Serve the registry with :mod:`services.exposition` so the ``vllm:`` names keep their colon.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from llmtwin.observe.catalog import Kind, MetricDef, OneTwoFive, Owner
from llmtwin.observe.families import family, owned_by
from llmtwin.observe.observations import (
    ClusterWindow,
    ConductorWindow,
    EngineRequests,
    FinishedRequest,
    InstanceWindow,
    RunInfo,
)
from llmtwin.observe.twin_families import ROLE_STATES

CONDUCTOR_FAMILIES = ("twin_run_info", "twin_conductor_pace_ratio", "twin_conductor_speed_ratio")
"""The conductor families this module exports; services/metrics.py's ConductorMetrics has the rest."""


class Family:
    """One catalogue family: plain-number children keyed by label values."""

    __slots__ = ("bounds", "d", "name", "values")

    def __init__(self, d: MetricDef, name: str, bounds: tuple[float, ...]) -> None:
        self.d, self.name, self.bounds = d, name, bounds
        self.values: dict[tuple[str, ...], list[float]] = {}
        """Per label values: [value] (counter, gauge) or [count per bucket..., +Inf count, sum]."""

    def child(self, labels: tuple[str, ...]) -> list[float]:
        v = self.values.get(labels)
        if v is None:
            v = self.values[labels] = [0.0] * (len(self.bounds) + 2 if self.d.kind is Kind.HISTOGRAM else 1)
        return v

    def inc(self, labels: tuple[str, ...], amount: float) -> None:
        self.child(labels)[0] += amount

    def set(self, labels: tuple[str, ...], value: float) -> None:
        self.child(labels)[0] = value

    def observe(self, labels: tuple[str, ...], value: float, count: int = 1) -> None:
        v = self.child(labels)
        v[bisect_left(self.bounds, value)] += count
        v[-1] += value * count

    def observe_many(self, labels: tuple[str, ...], values: npt.NDArray[np.float64]) -> None:
        """Many observations at once (a bucket holds the values <= its bound, as ``observe``)."""
        v = self.child(labels)
        if values.size:
            counts = np.bincount(np.searchsorted(self.bounds, values, side="left"), minlength=len(v) - 1)
            for k, n in enumerate(counts.tolist()):
                v[k] += n
            v[-1] += float(values.sum())

    def collect(self) -> Metric:
        d, labels = self.d, list(self.d.labels)
        if d.kind is Kind.COUNTER:
            fam: Metric = CounterMetricFamily(self.name, d.help, labels=labels)
        elif d.kind is Kind.GAUGE:
            fam = GaugeMetricFamily(self.name, d.help, labels=labels)
        else:
            fam = HistogramMetricFamily(self.name, d.help, labels=labels)
        les = [*map(floatToGoString, self.bounds), "+Inf"]
        for key, v in sorted(self.values.items()):
            if isinstance(fam, HistogramMetricFamily):
                running, cumulative = 0.0, []
                for le, n in zip(les, v[:-1], strict=True):
                    running += n
                    cumulative.append((le, running))
                fam.add_metric(list(key), cumulative, sum_value=v[-1])
            else:
                fam.add_metric(list(key), v[0])  # type: ignore[attr-defined]
        return fam


class FleetMetrics:
    """The fleet families one service exports (see the module docstring)."""

    def __init__(
        self, registry: CollectorRegistry, owner: Owner, mode: str = "vllm+twin", max_model_len: int = 8192
    ) -> None:
        if owner not in (Owner.DEVICE, Owner.BALANCER, Owner.CONDUCTOR):
            raise ValueError(f"the {owner.value} families are services/metrics.py's, not fleet families")
        defs = owned_by(owner, mode)
        if owner is Owner.CONDUCTOR:
            defs = tuple(d for d in defs if d.name in CONDUCTOR_FAMILIES)
        self.owner, self.mode = owner, mode
        self.families: dict[str, Family] = {}
        for d in defs:
            buckets = d.buckets.up_to(max_model_len) if isinstance(d.buckets, OneTwoFive) else d.buckets or ()
            self.families[d.name] = Family(d, d.twin_name if mode == "twin" else d.name, buckets)
        self.info: RunInfo | None = None
        self._engines: set[tuple[str, str]] = set()
        self._met = self._ended = 0
        self._covered_s: dict[tuple[str, ...], float] = {}
        """Virtual time each engine's (and the cluster's) metrics cover so far."""
        self._first_arrival: float | None = None
        registry.register(self)

    # -- the collector protocol ------------------------------------------------------------------------
    def describe(self) -> Iterator[Metric]:
        for f in self.families.values():
            kind = {Kind.COUNTER: CounterMetricFamily, Kind.GAUGE: GaugeMetricFamily}.get(f.d.kind)
            yield (kind or HistogramMetricFamily)(f.name, f.d.help, labels=list(f.d.labels))

    def collect(self) -> Iterator[Metric]:
        for f in self.families.values():
            yield f.collect()

    # -- verbs -------------------------------------------------------------------------------------------
    def start_run(self, info: RunInfo) -> None:
        """A run starts: forget the previous run's series and set what is known up front."""
        for f in self.families.values():
            f.values.clear()
            if isinstance(f.d.buckets, OneTwoFive):
                f.bounds = f.d.buckets.up_to(info.max_model_len)
        self.info = info
        self._engines.clear()
        self._met = self._ended = 0
        self._covered_s.clear()
        self._first_arrival = None
        m = info.model_name
        if self.owner is Owner.BALANCER:
            self._set("twin_cluster_devices", (m,), info.devices)
            self._set("twin_slo_target_seconds", (m, "ttft", "value"), info.slo_ttft_s)
            self._set("twin_slo_target_seconds", (m, "tbt", info.slo_tbt_stat), info.slo_tbt_s)
            for k, (a, b) in enumerate(info.pairs):
                self._set("twin_instance_pair_info", (m, a, str(k), b), 1.0)
                self._set("twin_instance_pair_info", (m, b, str(k), a), 1.0)
            paired = {e for pair in info.pairs for e in pair}
            for e in info.engines:
                if e not in paired:
                    self._set("twin_instance_pair_info", (m, e, "-", "-"), 0.0)
            for name in ("twin_requests_arrived_total", "twin_slo_met_requests_total"):
                self._inc(name, (m,), 0.0)
            for engine in info.engines:
                self._zeros((m, engine))
        if self.owner is Owner.CONDUCTOR:
            self._set("twin_run_info", (info.run_id, info.scenario, info.policy, m, info.hardware), 1.0)

    def end_run(self) -> None:
        """The run ended: ``twin_run_info`` drops to 0; every other series keeps its final value."""
        if self.owner is Owner.CONDUCTOR and self.info is not None:
            i = self.info
            self._set("twin_run_info", (i.run_id, i.scenario, i.policy, i.model_name, i.hardware), 0.0)

    def observe_instance(self, w: InstanceWindow) -> None:
        """One instance's window (device services)."""
        e = (self._model(), w.engine)
        if e not in self._engines:
            self._zeros(e)
        kv_used = w.kv_primary_bytes + w.kv_redundant_bytes
        kv_ratio = kv_used / w.kv_capacity_bytes if w.kv_capacity_bytes > 0 else 0.0
        for name, value in (
            ("vllm:num_requests_running", w.running),
            ("vllm:num_requests_waiting", w.waiting),
            ("vllm:kv_cache_usage_perc", kv_ratio),
            ("vllm:gpu_cache_usage_perc", kv_ratio),
            ("twin_instance_kv_cache_capacity_bytes", w.kv_capacity_bytes),
            ("twin_instance_hbm_used_bytes", w.hbm_used_bytes),
            ("twin_instance_hbm_capacity_bytes", w.hbm_capacity_bytes),
            ("twin_instance_l2_capacity_bytes", w.l2_capacity_bytes),
            ("twin_instance_allreduce_share_ratio", w.allreduce_share),
            ("twin_preserve_l2_prefetch_bytes", w.preserve_l2_bytes),
        ):
            self._set(name, e, float(value))
        self._set("twin_instance_kv_cache_bytes", (*e, "primary"), w.kv_primary_bytes)
        self._set("twin_instance_kv_cache_bytes", (*e, "redundant"), w.kv_redundant_bytes)
        for role in ROLE_STATES:
            self._set("twin_instance_role", (*e, role), 1.0 if role == w.role else 0.0)
        for name, amount in (
            ("vllm:num_preemptions_total", w.preemptions),
            ("vllm:generation_tokens_total", w.generation_tokens),
            ("twin_instance_role_switches_total", w.role_switches),
            ("twin_instance_iterations_total", w.iterations),
            ("twin_instance_kv_moved_bytes_total", w.kv_moved_bytes),
            ("twin_instance_handovers_total", w.handovers),
            ("twin_instance_allreduce_seconds_total", w.allreduce_s),
            ("twin_preserve_prefetched_bytes_total", w.preserve_prefetched_bytes),
            ("twin_preserve_saved_seconds_total", w.preserve_saved_s),
        ):
            self._inc(name, e, float(amount))
        self._cover("twin_instance_virtual_seconds_total", e, max(w.at_s, w.counted_to_s))
        for role, s in w.busy_s.items():
            self._inc("twin_instance_busy_seconds_total", (*e, role), s)
        for role, s in w.idle_s.items():
            self._inc("twin_instance_idle_seconds_total", (*e, role), s)
        self._observe("vllm:iteration_tokens_total", e, w.iteration_tokens)
        self._observe("twin_instance_batch_sequences", e, w.batch_sequences)

    def observe_requests(self, r: EngineRequests) -> None:
        """What the balancer's request tracker learnt about one engine's requests."""
        e = (self._model(), r.engine)
        self._inc("vllm:prompt_tokens_total", e, float(r.prompt_tokens))
        self._observe_many("vllm:time_to_first_token_seconds", e, r.ttft_s)
        for name in ("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"):
            self._observe_many(name, e, r.token_gaps_s)
        self._finished(e, r.finished)

    def observe_cluster(self, w: ClusterWindow) -> None:
        """The balancer's window."""
        m = (self._model(),)
        info = self._info()
        self._cover("twin_cluster_virtual_seconds_total", m, w.at_s)
        self._inc("twin_requests_arrived_total", m, w.arrived)
        self._inc("twin_slo_met_requests_total", m, w.slo_met)
        for reason, n in w.failed.items():
            self._inc("twin_requests_failed_total", (*m, reason), n)
        self._met += w.slo_met
        self._ended += w.finished + sum(w.failed.values())
        if self._ended:
            self._set("twin_cluster_slo_attainment_ratio", m, self._met / self._ended)
        if w.first_arrival_s is not None and w.last_completion_s is not None:
            span = w.last_completion_s - w.first_arrival_s
            if span > 0:
                self._set("twin_cluster_goodput_requests_per_second", m, self._met / span)
        if w.first_arrival_s is not None and info.usd_per_device_hour is not None:
            hours = max(0.0, w.at_s - w.first_arrival_s) / 3600.0
            self._set("twin_cluster_cost_usd_total", m, info.devices * hours * info.usd_per_device_hour)

    def observe_conductor(self, w: ConductorWindow) -> None:
        """The conductor's window: requested and achieved pace."""
        self._set("twin_conductor_pace_ratio", (), 0.0 if math.isinf(w.pace) else w.pace)
        self._set("twin_conductor_speed_ratio", (), w.speed)

    # -- helpers -----------------------------------------------------------------------------------------
    def _finished(self, e: tuple[str, str], rs: Sequence[FinishedRequest]) -> None:
        """The per-request families of requests that finished on engine ``e``, in bulk (one
        array per family: a run finishes thousands of requests between two readings)."""
        if not rs:
            return
        for reason, n in Counter(r.finished_reason for r in rs).items():
            self._inc("vllm:request_success_total", (*e, reason), float(n))
        col = {
            k: np.fromiter((getattr(r, k) for r in rs), np.float64, len(rs))
            for k in ("arrival_s", "scheduled_s", "first_token_s", "completion_s")
        }
        prompt = np.fromiter((r.prompt_tokens for r in rs), np.float64, len(rs))
        generated = np.fromiter((r.generated_tokens for r in rs), np.float64, len(rs))
        arrival, scheduled = col["arrival_s"], col["scheduled_s"]
        first, completion = col["first_token_s"], col["completion_s"]
        # The same subtractions as FinishedRequest's properties, so the same floats.
        for name, values in (
            ("vllm:e2e_request_latency_seconds", completion - arrival),
            ("vllm:request_queue_time_seconds", scheduled - arrival),
            ("vllm:request_inference_time_seconds", completion - scheduled),
            ("vllm:request_prefill_time_seconds", first - scheduled),
            ("vllm:request_decode_time_seconds", completion - first),
            ("vllm:request_prompt_tokens", prompt),
            ("vllm:request_generation_tokens", generated),
            ("vllm:request_max_num_generation_tokens", generated),
        ):
            self._observe_many(name, e, values)
        several = generated > 1  # mean_tpot_s: None with fewer than two tokens
        tpot = (completion - first)[several] / (generated[several] - 1)
        self._observe_many("vllm:request_time_per_output_token_seconds", e, tpot)

    def _cover(self, name: str, labels: tuple[str, ...], at_s: float) -> None:
        """Count the virtual time from the previous reading (the run's start: 0) up to ``at_s``."""
        before = self._covered_s.get(labels, 0.0)
        self._inc(name, labels, max(0.0, at_s - before))  # a zero makes the series exist from the start
        self._covered_s[labels] = max(before, at_s)

    def _zeros(self, e: tuple[str, str]) -> None:
        """Every series of a newly seen instance, at zero, so that queries find them from the start."""
        self._engines.add(e)
        for f in self.families.values():
            if f.d.labels[:2] != ("model_name", "engine"):
                continue
            extra = f.d.labels[2:]
            if not extra:
                f.child(e)
            elif len(extra) == 1:
                for v in f.d.fixed_values(extra[0]):
                    f.child((*e, v))

    def _model(self) -> str:
        return self._info().model_name

    def _info(self) -> RunInfo:
        if self.info is None:
            raise RuntimeError("FleetMetrics: observe before start_run")
        return self.info

    def _family(self, name: str) -> Family | None:
        """The family ``name`` if this exporter has it (None: not exported in this mode)."""
        f = self.families.get(name)
        if f is None:
            family(name)  # a name the catalogue does not define is a bug: KeyError
        return f

    def _set(self, name: str, labels: Sequence[str], value: float) -> None:
        if (f := self._family(name)) is not None:
            f.set(tuple(labels), value)

    def _inc(self, name: str, labels: Sequence[str], amount: float) -> None:
        if (f := self._family(name)) is not None:
            f.inc(tuple(labels), amount)

    def _observe_many(
        self, name: str, labels: Sequence[str], values: Sequence[float] | npt.NDArray[np.float64]
    ) -> None:
        if (f := self._family(name)) is not None:
            f.observe_many(tuple(labels), np.asarray(values, dtype=np.float64))

    def _observe(self, name: str, labels: Sequence[str], values: Iterable[tuple[float, int]]) -> None:
        if (f := self._family(name)) is not None:
            key = tuple(labels)
            f.child(key)
            for value, count in values:
                f.observe(key, value, count)


class FleetExporters:
    """A service's :class:`FleetMetrics`, one per owner, made on first use. A run may ask for
    other names than the last one (``RunConfig.metrics``): that owner's families are then made
    again under the new names, and the old ones leave the registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.by_owner: dict[Owner, FleetMetrics] = {}

    def get(self, owner: Owner, mode: str) -> FleetMetrics:
        """``owner``'s families, named as ``mode`` says."""
        m = self.by_owner.get(owner)
        if m is not None and m.mode != mode:
            self.registry.unregister(m)
            m = None
        if m is None:
            m = self.by_owner[owner] = FleetMetrics(self.registry, owner, mode)
        return m
