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
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fuzz_messages import KINDS, stream
from service_builders import FUZZER, TOY_SPLIT, Services, start_secure_nats, start_services
from toy_components import run_local

from proto.control import RunSpec


def refused(svc: Services) -> Counter[str]:
    out: Counter[str] = Counter()
    for s in svc.services:
        for reason in ("malformed", "oversized"):
            out[s.name] += int(
                s.registry.get_sample_value("twin_bus_rejected_total", {"reason": reason}) or 0
            )
    out["client"] = svc.client.rejected["malformed"] + svc.client.rejected["oversized"]
    return out


async def fuzz(messages: int, seed: int) -> int:
    spec = RunSpec("toy", "pingpong", ("balls=2000",))
    hosts = [h.service_name for h in TOY_SPLIT]
    with tempfile.TemporaryDirectory() as tmp, start_secure_nats(Path(tmp)) as nats:
        svc = await start_services(nats.connect, TOY_SPLIT, planner=True)
        try:
            fuzzer = await nats.connect(FUZZER)
            svc.buses.append(fuzzer)
            run = asyncio.ensure_future(svc.run(spec, speed=20.0, run_id="fuzzed"))
            while svc.conductor.active is None or svc.conductor.active.window < 3:
                await asyncio.sleep(0.01)
            before = refused(svc)
            expected: Counter[str] = Counter()
            kinds: Counter[str] = Counter()
            t0 = time.perf_counter()
            for target, kind, data in stream("fuzzed", hosts, messages, seed, planner=True):
                await fuzzer.publish(target.subject, data)
                expected.update(target.counters)
                kinds[kind] += 1
            await fuzzer.flush()
            sent_s = time.perf_counter() - t0
            if run.done():
                print("the run ended before the fuzz was delivered: use a longer run", file=sys.stderr)
                return 1
            out = await asyncio.wait_for(run, 600)
            deadline = time.monotonic() + 60
            while refused(svc) - before != expected and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            got = refused(svc) - before
            down = [s.name for s in svc.services if s.state != "ready"]
        finally:
            await svc.stop()
    ref = run_local(spec)
    same = {k: bytes(v) for k, v in out.parts.items()} == ref.parts and out.end_s == ref.end_s
    print(f"{messages} messages ({', '.join(f'{kinds[k]} {k}' for k in KINDS)}) published in {sent_s:.2f} s")
    print(f"{'service':<12}{'expected':>10}{'counted':>10}")
    for name in sorted(expected):
        print(f"{name:<12}{expected[name]:>10}{got[name]:>10}")
    print(f"services down: {down or 'none'}; results identical to LocalRunner: {same}")
    ok = got == expected and not down and same
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
