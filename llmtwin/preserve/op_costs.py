"""Op costs of one step on one device, for a given L2 capacity: the physics PRESERVE plans against.

Times come from :func:`llmtwin.physics.op_time.op_time`; this module adds what depends on L2
*capacity* (the roofline only knows L2 *bandwidth*):

* **Live data.** An op's activations (inputs, outputs) and a collective's buffers must sit in L2
  while it runs; they are its traffic that is not a read-only operand:
  ``hbm_bytes - prefetchable_bytes``. The planner keeps that space free.
* **Re-reads when the working set does not fit.** The graph's ``hbm_bytes`` count every byte
  once, which holds only if an op's reused operand stays in L2. A GEMM reads its activation
  operand (m x k) once per output-column tile (``WorkingSetConfig.gemm_tile_n`` columns); when
  that operand is larger than the L2 space left to it, the share that does not fit comes from HBM
  again on every further tile. This is the effect of L2 size without any prefetch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from llmtwin.hardware.spec import HardwareSpec
from llmtwin.physics.graph import Op
from llmtwin.physics.op_time import op_time
from llmtwin.physics.precision import Precision
from llmtwin.physics.roofline import class_bandwidth_fraction
from llmtwin.preserve.config import WorkingSetConfig


class OpCosts:
    """Cost of each op of one step (``ops`` as ``StepModel.ops`` returns them) on one device."""

    def __init__(
        self,
        hw: HardwareSpec,
        prec: Precision,
        tp: int,
        ops: Sequence[Op],
        l2_capacity: float,
        working_set: WorkingSetConfig | None = None,
    ) -> None:
        self.hw = hw
        self.prec = prec
        self.tp = tp
        self.ops = tuple(ops)
        self.l2_capacity = max(0.0, l2_capacity)
        """L2 bytes on the device (may differ from ``hw.l2_capacity`` in a design-space sweep)."""
        self.working_set = working_set or WorkingSetConfig()
        self.hbm_rate = hw.hbm_bandwidth * class_bandwidth_fraction(hw.efficiency, "stream")
        """Bytes/s a streaming transfer reaches in HBM: the rate at which the device model's
        weight-streaming kernels read (``hbm x stream_realised`` of peak), so a prefetched byte
        costs the side stream exactly what it would have cost its consumer."""
        self._vanilla = tuple(self.time(i) for i in range(len(self.ops)))

    def __len__(self) -> int:
        return len(self.ops)

    def live_bytes(self, i: int) -> float:
        """Bytes op ``i`` keeps live in L2 while it runs: activations and collective buffers."""
        op = self.ops[i]
        return max(0.0, op.hbm_bytes - op.prefetchable_bytes)

    def reused_operand_bytes(self, i: int) -> float:
        """Bytes of the operand op ``i`` reads more than once (a GEMM's activations), else 0."""
        op = self.ops[i]
        if op.kind != "gemm" or op.gemm_mnk is None:
            return 0.0
        m, _, k = op.gemm_mnk
        return m * k * self.prec.act_bytes

    def reread_bytes(self, i: int, l2_avail: float | None = None) -> float:
        """Extra HBM bytes op ``i`` reads because its reused operand does not fit in ``l2_avail``
        bytes of L2 (default: the whole L2)."""
        operand = self.reused_operand_bytes(i)
        if operand <= 0:
            return 0.0
        avail = self.l2_capacity if l2_avail is None else max(0.0, l2_avail)
        if operand <= avail:
            return 0.0
        op = self.ops[i]
        assert op.gemm_mnk is not None
        tiles = math.ceil(op.gemm_mnk[1] / self.working_set.gemm_tile_n)
        # The part that fits is served from L2 on every tile; the rest is fetched again per tile.
        return (tiles - 1) * (operand - avail)

    def hbm_bytes(self, i: int, l2_hits: float = 0.0, l2_avail: float | None = None) -> float:
        """Bytes op ``i`` moves through HBM when ``l2_hits`` of its operands come from L2."""
        op = self.ops[i]
        return max(0.0, op.hbm_bytes + self.reread_bytes(i, l2_avail) - l2_hits)

    def time(self, i: int, l2_hits: float = 0.0, l2_avail: float | None = None) -> float:
        """Seconds op ``i`` takes alone, ``l2_hits`` bytes of its read-only operands served from
        L2 and ``l2_avail`` bytes of L2 left for its working set (default: the whole L2)."""
        op = self.ops[i]
        hits = min(max(0.0, l2_hits), op.prefetchable_bytes)
        extra = self.reread_bytes(i, l2_avail)
        if extra > 0:
            op = replace(op, hbm_bytes=op.hbm_bytes + extra)
        return op_time(self.hw, op, self.prec, self.tp, hits)

    def vanilla_time(self, i: int) -> float:
        """Seconds op ``i`` takes with nothing prefetched and the whole L2 for its working set."""
        return self._vanilla[i]

    @property
    def vanilla_step_s(self) -> float:
        return sum(self._vanilla)
