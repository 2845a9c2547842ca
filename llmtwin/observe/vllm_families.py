"""The vLLM compatibility layer: vLLM's own metric families, exported for the simulated instances.

Names, types, label names and bucket boundaries are vLLM V1's (``vllm/v1/metrics/loggers.py``,
``vllm/v1/metrics/buckets.py``; ../shared/reference/observability-security.md section 1), so a
dashboard made for a vLLM fleet shows the twin without edits. ``model_name`` is the scenario's
model; ``engine`` is the simulated instance (``instance-3``). Latencies are virtual seconds:
at ``--speed 1`` they move as a real fleet's would.

Who exports what: each device service the families of an engine's own state and iterations
(running, waiting, KV use, preemptions, generated tokens, tokens per iteration), for the
instances it leads; the balancer the families of requests (TTFT, gaps, per-request latencies
and lengths, finished requests, prompt tokens), still labelled with the engine concerned: under
AcceLLM and disaggregated serving a request's tokens come from two instances, and only the
balancer's request tracker (``llmtwin/observe/request_tracker.py``) sees all of them. A first
token goes to the instance that produced it, a gap to the instance of the token after it, a
finished request to the instance of its last token.

Not exported: the prefix-cache counters, ``cache_config_info`` and the LoRA and speculative-
decoding families (the twin models none of them), ``request_params_max_tokens`` and
``request_params_n`` (a trace records what a request generated, not what its client asked for),
and vLLM's deprecated ``num_requests_swapped``.
"""

from __future__ import annotations

from llmtwin.observe.catalog import Clock, Kind, MetricDef, OneTwoFive, Owner

ENGINE_LABELS = ("model_name", "engine")
"""Labels on every vLLM engine metric."""

FINISHED_REASONS = ("stop", "length", "abort")
"""vLLM's ``finished_reason`` values the twin produces: a twin request ends with the output
length its trace or distribution gave it, which is where the real model stopped (``stop``);
``length`` and ``abort`` stay at zero (the twin has no max_tokens cut-off or client aborts) and
are exported so vLLM's finish-reason panels list them."""

TTFT_BUCKETS_S = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
"""vLLM's time-to-first-token buckets, seconds."""

ITL_BUCKETS_S = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
    80.0,
)  # fmt: skip
"""vLLM's inter-token and per-output-token buckets, seconds."""

REQUEST_BUCKETS_S = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip
"""vLLM's request-latency buckets (end to end, queue, inference, prefill, decode), seconds."""

ITERATION_TOKEN_BUCKETS = (
    1.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0,
)  # fmt: skip
"""vLLM's tokens-per-engine-step buckets."""

TOKEN_COUNT_BUCKETS = OneTwoFive()
"""vLLM's per-request token-count buckets: 1-2-5 up to the model's context length."""


def _vllm(
    name: str,
    kind: Kind,
    help: str,
    unit: str,
    clock: Clock,
    buckets: tuple[float, ...] | OneTwoFive | None = None,
    *,
    extra_labels: tuple[str, ...] = (),
    label_values: tuple[tuple[str, tuple[str, ...]], ...] = (),
    alias_of: str | None = None,
    owner: Owner = Owner.DEVICE,
) -> MetricDef:
    return MetricDef(
        name=name,
        kind=kind,
        help=help,
        labels=ENGINE_LABELS + extra_labels,
        owner=owner,
        clock=clock,
        unit=unit,
        buckets=buckets,
        vllm_compat=True,
        alias_of=alias_of,
        label_values=label_values,
    )


C, G, H = Kind.COUNTER, Kind.GAUGE, Kind.HISTOGRAM
V, N = Clock.VIRTUAL, Clock.NONE
B = Owner.BALANCER

VLLM_FAMILIES: tuple[MetricDef, ...] = (
    _vllm("vllm:num_requests_running", G, "Requests in the instance's running batch", "requests", N),
    _vllm(
        "vllm:num_requests_waiting",
        G,
        "Requests waiting at the instance to be scheduled (queued prompts and sequences held for decoding)",
        "requests",
        N,
    ),
    _vllm(
        "vllm:kv_cache_usage_perc",
        G,
        "KV-cache use, 0 to 1: blocks held (primary and, under AcceLLM, redundant copies) / blocks available",
        "ratio",
        N,
    ),
    _vllm(
        "vllm:gpu_cache_usage_perc",
        G,
        "Deprecated vLLM alias of vllm:kv_cache_usage_perc",
        "ratio",
        N,
        alias_of="vllm:kv_cache_usage_perc",
    ),
    _vllm(
        "vllm:num_preemptions_total",
        C,
        "Preemptions (a running sequence evicted to recompute later)",
        "preemptions",
        N,
    ),
    _vllm(
        "vllm:prompt_tokens_total",
        C,
        "Prompt tokens prefilled, counted once per request when its "
        "first token is reported (recomputation after a preemption is not counted)",
        "tokens",
        N,
        owner=B,
    ),
    _vllm("vllm:generation_tokens_total", C, "Tokens generated (first tokens included)", "tokens", N),
    _vllm(
        "vllm:request_success_total",
        C,
        "Requests finished, by finish reason",
        "requests",
        N,
        extra_labels=("finished_reason",),
        label_values=(("finished_reason", FINISHED_REASONS),),
        owner=B,
    ),
    _vllm(
        "vllm:time_to_first_token_seconds",
        H,
        "Time to first token: first token - arrival at the "
        "balancer, observed when the instance that produced the first token reports it",
        "seconds",
        V,
        TTFT_BUCKETS_S,
        owner=B,
    ),
    _vllm(
        "vllm:inter_token_latency_seconds",
        H,
        "Gap between consecutive tokens of a request, observed when the instance that produced "
        "the later token reports it (a gap across two instances: when the request completes)",
        "seconds",
        V,
        ITL_BUCKETS_S,
        owner=B,
    ),
    _vllm(
        "vllm:time_per_output_token_seconds",
        H,
        "Deprecated vLLM alias of vllm:inter_token_latency_seconds",
        "seconds",
        V,
        ITL_BUCKETS_S,
        alias_of="vllm:inter_token_latency_seconds",
        owner=B,
    ),
    _vllm(
        "vllm:request_time_per_output_token_seconds",
        H,
        "Mean gap between a finished request's tokens (requests with at least two tokens)",
        "seconds",
        V,
        ITL_BUCKETS_S,
        owner=B,
    ),
    _vllm(
        "vllm:e2e_request_latency_seconds",
        H,
        "End-to-end latency of a finished request: completion - arrival",
        "seconds",
        V,
        REQUEST_BUCKETS_S,
        owner=B,
    ),
    _vllm(
        "vllm:request_queue_time_seconds",
        H,
        "Time a finished request waited before its first iteration: first scheduled - arrival",
        "seconds",
        V,
        REQUEST_BUCKETS_S,
        owner=B,
    ),
    _vllm(
        "vllm:request_inference_time_seconds",
        H,
        "Time from a finished request's first iteration to its last token (prefill + decode)",
        "seconds",
        V,
        REQUEST_BUCKETS_S,
        owner=B,
    ),
    _vllm(
        "vllm:request_prefill_time_seconds",
        H,
        "Time from a finished request's first iteration to its first token",
        "seconds",
        V,
        REQUEST_BUCKETS_S,
        owner=B,
    ),
    _vllm(
        "vllm:request_decode_time_seconds",
        H,
        "Time from a finished request's first token to its last",
        "seconds",
        V,
        REQUEST_BUCKETS_S,
        owner=B,
    ),
    _vllm(
        "vllm:request_prompt_tokens",
        H,
        "Prompt tokens of a finished request",
        "tokens",
        N,
        TOKEN_COUNT_BUCKETS,
        owner=B,
    ),
    _vllm(
        "vllm:request_generation_tokens",
        H,
        "Tokens a finished request generated",
        "tokens",
        N,
        TOKEN_COUNT_BUCKETS,
        owner=B,
    ),
    _vllm(
        "vllm:request_max_num_generation_tokens",
        H,
        "Most tokens generated by one sequence of a finished "
        "request (the twin has one sequence per request: its generated tokens)",
        "tokens",
        N,
        TOKEN_COUNT_BUCKETS,
        owner=B,
    ),
    _vllm(
        "vllm:iteration_tokens_total",
        H,
        "Tokens per engine iteration (prefill tokens plus one per decoding sequence)",
        "tokens",
        N,
        ITERATION_TOKEN_BUCKETS,
    ),
)
"""The vLLM-compatible families, in vLLM's documentation order."""
