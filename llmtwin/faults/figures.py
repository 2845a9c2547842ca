"""The fault figures of one run (summary.json's ``faults``), from its :class:`FaultRecord`.

* ``requests_affected``: requests a failed instance held, or that were sent to one;
* ``requests_recomputed`` and ``recomputed_kv_tokens``: those prefilled again because their KV
  was lost, and the KV tokens that had been computed for them and were lost (what the recompute
  does again, over the prompt and every token produced before the failure);
* ``requests_redirected``: disaggregated requests whose intact KV went to another decode instance;
* ``requests_kept``: the others (AcceLLM: decoded on by the partner from its copy, no recompute;
  any policy: queued prompts sent elsewhere before any work);
* ``down_device_s``: device-seconds the failed instances were down within the run (until their
  recovery, or the last completion).
"""

from __future__ import annotations

from llmtwin.cluster.records import RunResult


def fault_figures(result: RunResult, end_s: float) -> dict[str, float]:
    """Empty for a run without failures."""
    f = result.faults
    if not f.down:
        return {}
    tp = result.tp
    down = sum(max(0.0, min(end_s, end if end is not None else end_s) - at) * tp for _, at, end in f.down)
    recomputed = [r for r, kv in f.recomputed_kv_tokens.items() if kv > 0]
    kept = set(f.affected) - set(recomputed) - set(f.redirected)
    return {
        "requests_affected": float(len(f.affected)),
        "requests_recomputed": float(len(recomputed)),
        "recomputed_kv_tokens": float(sum(f.recomputed_kv_tokens.values())),
        "requests_redirected": float(len(f.redirected)),
        "requests_kept": float(len(kept)),
        "down_device_s": down,
    }
