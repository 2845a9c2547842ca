"""Do a run's exported metric totals agree with its summary.json? The check, as one function.

:func:`summary_mismatches` takes the samples of every service's /metrics at the end of a run
(or a Prometheus instant query of the same) and the run's summary (summary.json as loaded), and
lists every disagreement; an empty list means they agree. Either metric naming (``vllm:`` or
``--metrics twin``) is accepted. Counts must be equal; sums of seconds and bytes agree to a
relative 1e-9 (the order of additions differs).

What is compared (summary key: metrics):

* requests_completed: ``vllm:request_success_total`` (stop, length); requests_total:
  ``twin_requests_arrived_total`` (at most, in a run cut short: some never arrived); requests_failed without unfinished ones:
  ``twin_requests_failed_total``; round(slo_attainment x requests_total):
  ``twin_slo_met_requests_total``;
* prompt_tokens, output_tokens, preemptions, role_switches, kv_bytes_moved: the counters of the
  same meaning;
* ttft_s, tbt_s, e2e_s: count and sum (mean x count) of the vLLM histograms (TTFT, inter-token
  latency and its deprecated alias, end to end); the other per-request histograms count
  requests_completed; tbt_request_mean_s: ``vllm:request_time_per_output_token_seconds``
  (only when no request was left unfinished, as the summary counts those too);
* mean_batch_size: sum / count of ``twin_instance_batch_sequences``;
* busy_fraction x devices x span_s: ``twin_instance_busy_seconds_total`` by role x tp;
* goodput_requests_per_second, cost_usd: the cluster gauges.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from llmtwin.cluster.assemble import UNFINISHED
from llmtwin.observe.catalog import Kind, lookup
from llmtwin.observe.families import CATALOG

Sample = tuple[str, Mapping[str, str], float]
"""One sample as Prometheus stores it: (name, labels, value)."""

REL_TOL = 1e-9

PER_REQUEST_HISTOGRAMS = (
    "vllm:e2e_request_latency_seconds",
    "vllm:request_queue_time_seconds",
    "vllm:request_inference_time_seconds",
    "vllm:request_prefill_time_seconds",
    "vllm:request_decode_time_seconds",
    "vllm:request_prompt_tokens",
    "vllm:request_generation_tokens",
    "vllm:request_max_num_generation_tokens",
)


class Totals:
    """Samples summed per (family, series suffix, selected label values), under catalogue names."""

    def __init__(self, samples: Iterable[Sample]) -> None:
        self._sums: dict[tuple[str, str], list[tuple[Mapping[str, str], float]]] = {}
        for name, labels, value in samples:
            m = lookup(name, CATALOG)
            if m is None:
                continue
            exported = m.twin_name if name.startswith(m.twin_name) and m.vllm_compat else m.name
            suffix = name[len(exported) :] if m.kind is Kind.HISTOGRAM else ""
            self._sums.setdefault((m.name, suffix), []).append((labels, value))

    def has(self, name: str, suffix: str = "") -> bool:
        return (name, suffix) in self._sums

    def sum(self, name: str, suffix: str = "", /, **match: str | tuple[str, ...]) -> float:
        """Sum of the samples of ``name`` + ``suffix`` whose labels match (a value or a tuple of them)."""
        total = 0.0
        for labels, value in self._sums.get((name, suffix), []):
            if all(labels.get(k) in ((v,) if isinstance(v, str) else v) for k, v in match.items()):
                total += value
        return total


def summary_mismatches(samples: Iterable[Sample], summary: Mapping[str, Any]) -> list[str]:
    """Every disagreement between the metric totals and ``summary`` (see the module docstring)."""
    t = Totals(samples)
    out: list[str] = []

    def need(name: str, suffix: str = "") -> bool:
        if not t.has(name, suffix):
            out.append(f"{name}{suffix}: no samples")
            return False
        return True

    def equal(what: str, got: float, want: float | None, exact: bool = True) -> None:
        if want is None:
            return
        ok = got == want if exact else math.isclose(got, want, rel_tol=REL_TOL, abs_tol=1e-12)
        if not ok:
            out.append(f"{what}: metrics say {got!r}, summary.json says {want!r}")

    def counter(name: str, want: float | None, exact: bool = True, **match: str | tuple[str, ...]) -> None:
        if name == "twin_requests_failed_total" and want == 0 and not t.has(name):
            return  # its reason label has no fixed values: no failure, no series
        if need(name):
            equal(name, t.sum(name, "", **match), want, exact)

    def histogram(name: str, count: int, total: float | None = None) -> None:
        if need(name, "_count"):
            equal(f"{name}_count", t.sum(name, "_count"), count)
            if total is not None:
                equal(f"{name}_sum", t.sum(name, "_sum"), total, exact=False)

    def dist(key: str) -> tuple[int, float | None]:
        d = summary[key]
        return int(d["count"]), (d["mean"] * d["count"] if d["mean"] is not None else None)

    completed = int(summary["requests_completed"])
    unfinished = int(summary["failure_reasons"].get(UNFINISHED, 0))
    counter("vllm:request_success_total", completed, finished_reason=("stop", "length"))
    if unfinished == 0:
        counter("twin_requests_arrived_total", summary["requests_total"])
    elif (
        need("twin_requests_arrived_total")
        and t.sum("twin_requests_arrived_total") > summary["requests_total"]
    ):
        out.append("twin_requests_arrived_total: more than the run's requests")
    counter("twin_requests_failed_total", int(summary["requests_failed"]) - unfinished)
    if summary["slo_attainment"] is not None:
        counter("twin_slo_met_requests_total", round(summary["slo_attainment"] * summary["requests_total"]))
    counter("vllm:prompt_tokens_total", summary["prompt_tokens"])
    counter("vllm:generation_tokens_total", summary["output_tokens"])
    counter("vllm:num_preemptions_total", summary["preemptions"])
    counter("twin_instance_role_switches_total", summary["role_switches"])
    counter("twin_instance_kv_moved_bytes_total", summary["kv_bytes_moved"], exact=False)

    histogram("vllm:time_to_first_token_seconds", *dist("ttft_s"))
    histogram("vllm:inter_token_latency_seconds", *dist("tbt_s"))
    if t.has("vllm:time_per_output_token_seconds", "_count"):
        histogram("vllm:time_per_output_token_seconds", *dist("tbt_s"))
    histogram("vllm:e2e_request_latency_seconds", *dist("e2e_s"))
    for name in PER_REQUEST_HISTOGRAMS[1:]:
        histogram(name, completed)
    if unfinished == 0:
        histogram("vllm:request_time_per_output_token_seconds", *dist("tbt_request_mean_s"))

    if need("twin_instance_batch_sequences", "_count"):
        n = t.sum("twin_instance_batch_sequences", "_count")
        mean = t.sum("twin_instance_batch_sequences", "_sum") / n if n else None
        if mean is None or summary["mean_batch_size"] is None:
            if mean != summary["mean_batch_size"]:
                out.append(
                    f"mean batch size: metrics say {mean}, summary.json says {summary['mean_batch_size']}"
                )
        else:
            equal("mean batch size", mean, summary["mean_batch_size"], exact=False)

    device_s = summary["devices"] * summary["span_s"]
    if need("twin_instance_busy_seconds_total"):
        for role, fraction in summary["busy_fraction"].items():
            got = t.sum("twin_instance_busy_seconds_total", role=role) * summary["tp"]
            equal(f"busy device-seconds ({role})", got, fraction * device_s, exact=False)

    if summary["goodput_requests_per_s"] and need("twin_cluster_goodput_requests_per_second"):
        got = t.sum("twin_cluster_goodput_requests_per_second")
        equal("goodput", got, summary["goodput_requests_per_s"], exact=False)
    if summary["cost_usd"] is not None:
        counter("twin_cluster_cost_usd_total", summary["cost_usd"], exact=False)
    return out
