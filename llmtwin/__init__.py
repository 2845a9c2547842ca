"""llmtwin: a digital twin of a distributed LLM-serving cluster.

The core (physics, policies, event loop) is pure, synchronous and deterministic; services in
``services/`` are thin asyncio adapters around it.
"""

__version__ = "0.1.0"
