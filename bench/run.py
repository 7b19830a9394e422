"""Benchmarks, measured side by side in one run and printed as ratios (no wall-clock limits).

1. Intake (`bench/intake.py`): joins against new cases, and alerts accepted per second through
   the intake against raw signal-with-starts at the same concurrency, on a real dev server.
2. CPU per case (`bench/cpu.py`): the emulator's process against the worker's, for the same cases.
3. Storm (`bench/storm.py`): 200 alerts over 20 connectors of 2 tenants through the intake to a
   worker process; time to verdict against the slowest evidence read, one case at a time, 50
   concurrent and in the storm; calls per case, 429s and repeated reads from the emulators' logs.
4. Worker footprint (`bench/footprint.py`): a worker process's memory and open files after 100
   and after 1,000 cases.
5. Pacing (`bench/pacing.py`): the worker's CPU per case with every call taking a turn from the
   quota pacer, against the same cases unpaced.
6. Hunting parameters (`bench/hunting.py`): rendered literals against bound parameters.

Run: `make bench` (or `.venv/bin/python -m bench.run`). docs/storms.md explains the figures.
"""

from __future__ import annotations

import asyncio
import time

from bench.cpu import bench_cpu_per_case
from bench.footprint import bench_worker_footprint
from bench.hunting import bench_hunting_parameters
from bench.intake import bench_intake
from bench.pacing import bench_pacing_cost
from bench.storm import bench_storm
from workers.cli import exit_now
from workers.logging import configure_logging
from workers.scenarios import start_dev_server


async def on_dev_server() -> list[tuple[str, float]]:
    took = []
    async with await start_dev_server() as env:
        for name, bench in (("intake", bench_intake), ("CPU per case", bench_cpu_per_case),
                            ("storm", bench_storm), ("worker footprint", bench_worker_footprint),
                            ("pacing", bench_pacing_cost)):
            started = time.perf_counter()
            await bench(env.client)
            took.append((name, time.perf_counter() - started))
    return took


def main() -> None:
    configure_logging("WARNING")
    started = time.perf_counter()
    took = asyncio.run(on_dev_server())
    hunting = time.perf_counter()
    bench_hunting_parameters()
    took.append(("hunting parameters", time.perf_counter() - hunting))
    print(f"make bench: {time.perf_counter() - started:.0f} s ("
          + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in took) + ")")


if __name__ == "__main__":
    main()
    exit_now(0)  # not finalizing: the Temporal SDK's threads may still call into it (workers/cli.py)
