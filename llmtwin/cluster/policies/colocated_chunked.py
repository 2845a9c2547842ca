"""Colocated serving with chunked prefill (Sarathi-Serve; vLLM's default scheduler today).

Routing as :mod:`colocated`. Every iteration has a token budget (``chunk_tokens``): the running
decodes come first (one token each), and the waiting prompts fill what is left, first come
first served, the last one admitted cut to the budget and continued in the next iterations
(only a prompt's last chunk produces its first token). So a long prompt never stalls the
decodes of its instance for longer than one budget's worth of prefill: the interference of
colocated serving is bounded by the budget, at the price of spreading a prompt over several
iterations (a longer TTFT) and of re-reading its earlier chunks' KV in each.
"""

from __future__ import annotations

from typing import ClassVar

from llmtwin.cluster.engine import Engine
from llmtwin.cluster.policies.base import Agent, Param
from llmtwin.cluster.policies.colocated import Colocated, ColocatedAgent


class ColocatedChunked(Colocated):
    """Colocated serving whose engines chunk prefills to a per-iteration token budget."""

    name: ClassVar[str] = "colocated-chunked"
    PARAMS: ClassVar[dict[str, Param]] = {
        **Colocated.PARAMS,
        "chunk_tokens": Param(
            2048,
            "Token budget of one iteration (decodes first, one token each; prompt chunks fill the "
            "rest): vLLM's max_num_batched_tokens with chunked prefill on. Smaller: shorter token "
            "gaps, longer TTFT.",
            low=16,
        ),
    }

    def agent(self, iid: int, engine: Engine) -> Agent:
        engine.chunk_prefills(int(self.params["chunk_tokens"]))
        return ColocatedAgent(iid, self.ctx, engine)
