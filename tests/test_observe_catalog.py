"""The metric catalogue: well formed, vLLM's exact names and buckets, and what the services register."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from llmtwin.observe.catalog import Kind, OneTwoFive, Owner, lookup, problems
from llmtwin.observe.families import CATALOG, family, owned_by
from services.fleet_metrics import CONDUCTOR_FAMILIES
from services.metrics import BusMetrics, ConductorMetrics, HostMetrics, PlannerMetrics

# vLLM V1's buckets, copied from ../shared/reference/observability-security.md (an independent copy).
TTFT = [
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1,
    2.5,
    5,
    7.5,
    10,
    20,
    40,
    80,
    160,
    640,
    2560,
]
ITL = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80]
REQUEST = [0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480, 960, 1920, 7680]
VLLM = {
    "vllm:num_requests_running": ("gauge", None),
    "vllm:num_requests_waiting": ("gauge", None),
    "vllm:kv_cache_usage_perc": ("gauge", None),
    "vllm:gpu_cache_usage_perc": ("gauge", None),
    "vllm:num_preemptions_total": ("counter", None),
    "vllm:prompt_tokens_total": ("counter", None),
    "vllm:generation_tokens_total": ("counter", None),
    "vllm:request_success_total": ("counter", None),
    "vllm:time_to_first_token_seconds": ("histogram", TTFT),
    "vllm:inter_token_latency_seconds": ("histogram", ITL),
    "vllm:time_per_output_token_seconds": ("histogram", ITL),
    "vllm:request_time_per_output_token_seconds": ("histogram", ITL),
    "vllm:e2e_request_latency_seconds": ("histogram", REQUEST),
    "vllm:request_queue_time_seconds": ("histogram", REQUEST),
    "vllm:request_inference_time_seconds": ("histogram", REQUEST),
    "vllm:request_prefill_time_seconds": ("histogram", REQUEST),
    "vllm:request_decode_time_seconds": ("histogram", REQUEST),
    "vllm:request_prompt_tokens": ("histogram", "1-2-5"),
    "vllm:request_generation_tokens": ("histogram", "1-2-5"),
    "vllm:request_max_num_generation_tokens": ("histogram", "1-2-5"),
    "vllm:iteration_tokens_total": (
        "histogram",
        [1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384],
    ),
}


def test_the_catalogue_is_well_formed() -> None:
    assert problems(CATALOG) == []


def test_the_vllm_layer_has_vllms_names_types_labels_and_buckets() -> None:
    compat = {m.name: m for m in CATALOG if m.vllm_compat}
    assert set(compat) == set(VLLM)
    for name, (kind, buckets) in VLLM.items():
        m = compat[name]
        assert m.kind.value == kind, name
        assert m.labels[:2] == ("model_name", "engine"), name
        if buckets == "1-2-5":
            assert isinstance(m.buckets, OneTwoFive)
        else:
            assert m.buckets == (None if buckets is None else tuple(float(b) for b in buckets)), name
    assert family("vllm:request_success_total").labels == ("model_name", "engine", "finished_reason")


def test_units_are_in_the_names_and_no_label_is_instance() -> None:
    for m in CATALOG:
        assert "instance" not in m.labels
        if m.unit == "seconds":
            assert "_seconds" in m.name, m.name
        if m.unit == "bytes":
            assert m.name.endswith(("_bytes", "_bytes_total")), m.name
        if m.unit == "ratio" and not m.vllm_compat:
            assert m.name.endswith("_ratio"), m.name


def test_one_two_five_buckets() -> None:
    assert OneTwoFive().up_to(100) == (1, 2, 5, 10, 20, 50, 100)
    assert OneTwoFive().up_to(4096)[-1] == 2000


def test_lookup_finds_series_under_both_namings() -> None:
    ttft = family("vllm:time_to_first_token_seconds")
    assert lookup("vllm:time_to_first_token_seconds_bucket", CATALOG) is ttft
    assert lookup("twin_time_to_first_token_seconds_count", CATALOG) is ttft
    assert lookup("twin_conductor_windows_total", CATALOG) is family("twin_conductor_windows_total")
    assert lookup("vllm:time_to_first_token_seconds_total", CATALOG) is None


def _registered(registry: CollectorRegistry) -> dict[str, tuple[str, tuple[str, ...], tuple[float, ...]]]:
    """name -> (type, labels, buckets) of everything a registry exposes, names as stored."""
    out = {}
    for fam in registry.collect():
        name = fam.name + "_total" if fam.type == "counter" else fam.name
        labels: set[str] = set()
        bounds: list[float] = []
        for s in fam.samples:
            if s.name.endswith("_created"):
                continue
            labels |= set(s.labels) - {"le"}
            if s.name.endswith("_bucket") and s.labels["le"] != "+Inf" and not (set(s.labels) - {"le"}):
                bounds.append(float(s.labels["le"]))
        out[name] = (fam.type, tuple(sorted(labels)), tuple(bounds))
    return out


def test_the_transport_metrics_the_services_register_are_the_catalogues() -> None:
    """services/metrics.py registers exactly the catalogue's process families (same types, labels, buckets)."""
    registry = CollectorRegistry()
    BusMetrics(registry)
    ConductorMetrics(registry)
    HostMetrics(registry)
    PlannerMetrics(registry)
    got = _registered(registry)
    want = {
        m.name: (m.kind.value, tuple(sorted(m.labels)), m.buckets if isinstance(m.buckets, tuple) else ())
        for owner in (Owner.EVERY, Owner.CONDUCTOR, Owner.HOST, Owner.PLANNER)
        for m in owned_by(owner)
        if m.name not in CONDUCTOR_FAMILIES
    }
    assert got == want


def test_every_family_has_an_owner_that_exports_it() -> None:
    exported = {m.name for owner in Owner for m in owned_by(owner)}
    assert exported == {m.name for m in CATALOG}
    assert all(m.kind in Kind for m in CATALOG)
