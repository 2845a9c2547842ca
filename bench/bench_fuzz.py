"""The long fuzz: 10,000 bad messages on every subject of a run over a real, secured nats-server.

    .venv/bin/python bench/bench_fuzz.py                    # 10,000 messages, toy fan run
    .venv/bin/python bench/bench_fuzz.py --messages 50000 --seed 3

Starts a nats-server with one user per service (as ``llmtwin up`` does), a conductor, two
hosts and a planner in this process (each on its own connection, as its own user), and a
fuzzer user allowed on every subject. While a paced toy run is in progress it publishes
random, truncated, wrong-type, wrong-version and oversized messages round-robin over every
subject of the run (``tests/fuzz_messages.py``), then checks and prints: every message counted
once by every service subscribed to its subject (``twin_bus_rejected_total`` malformed +
oversized; the controller's own count), no service down, and the run's exports identical to
LocalRunner's. The short version of this is ``tests/test_fuzz.py`` (500 messages).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fuzz_messages import KINDS, fuzz_run
from service_builders import FUZZER, TOY_SPLIT, start_secure_nats, start_services
from toy_components import run_local

from proto.control import RunSpec


async def fuzz(messages: int, seed: int) -> int:
    spec = RunSpec("toy", "pingpong", ("balls=2000",))
    with tempfile.TemporaryDirectory() as tmp, start_secure_nats(Path(tmp)) as nats:
        svc = await start_services(nats.connect, TOY_SPLIT, planner=True)
        try:
            r = await fuzz_run(svc, lambda: nats.connect(FUZZER), spec, messages, seed, speed=20.0)
        finally:
            await svc.stop()
    ref = run_local(spec)
    same = {k: bytes(v) for k, v in r.outcome.parts.items()} == ref.parts and r.outcome.end_s == ref.end_s
    print(
        f"{messages} messages ({', '.join(f'{r.kinds[k]} {k}' for k in KINDS)}) published in {r.publish_s:.2f} s"
    )
    print(f"{'service':<12}{'expected':>10}{'counted':>10}")
    for name in sorted(r.expected):
        print(f"{name:<12}{r.expected[name]:>10}{r.counted[name]:>10}")
    print(f"services down: {r.down or 'none'}; results identical to LocalRunner: {same}")
    ok = r.counted == r.expected and not r.down and same
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    return asyncio.run(fuzz(args.messages, args.seed))


if __name__ == "__main__":
    sys.exit(main())
