"""Speed of the device cost model: StepModel.time and StepModel.band per call, one full A100 calibration.

    .venv/bin/python bench/device_model_speed.py

Prints wall-clock figures for this machine; not a test.
"""

from __future__ import annotations

import time
from pathlib import Path

from llmtwin.calibrate.run import Inputs, calibrate
from llmtwin.hardware import HardwareCatalog
from llmtwin.models import ModelCatalog
from llmtwin.physics.graph import BatchShape
from llmtwin.physics.overhead import EngineCatalog
from llmtwin.physics.step import StepModel

MEASURED = Path(__file__).resolve().parents[2] / "shared" / "data" / "measured-a100"


def per_call_us(sm: StepModel, shapes: list[BatchShape], repeat: int = 5, band: bool = False) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for shape in shapes:
            sm.band(shape) if band else sm.time(shape)
        best = min(best, (time.perf_counter() - start) / len(shapes))
    return best * 1e6


def main() -> None:
    hw = HardwareCatalog().get("a100-80g")
    models = ModelCatalog()
    engine = EngineCatalog().get("splitwise-dgx-a100")
    for model, tp in (("llama-2-7b", 1), ("llama-2-70b", 8), ("bloom-176b", 8)):
        sm = StepModel(hw, models.get(model), tp, engine=engine)
        decode = [BatchShape.decode(b, 1000 + 7 * b) for b in range(1, 257)]
        prefill = [BatchShape.prefill(1, p) for p in range(16, 4112, 16)]
        print(
            f"StepModel.time {model:12s} TP{tp}: decode {per_call_us(sm, decode):6.1f} us/call, "
            f"prefill {per_call_us(sm, prefill):6.1f} us/call; band (device ops, engine none) "
            f"{per_call_us(StepModel(hw, models.get(model), tp), decode, band=True):6.1f} us/call"
        )
    if MEASURED.is_dir():
        start = time.perf_counter()
        calibrate(
            Inputs(
                hardware=hw,
                op_paths=[MEASURED],
                collective_paths=[MEASURED / "a100_dgx.all_reduce.csv", MEASURED / "a100_dgx.send_recv.csv"],
                iteration_path=MEASURED / "splitwise_dgx_a100_iterations.csv",
            ),
            models.get,
        )
        print(f"full A100 calibration (ops, collectives, engine): {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
