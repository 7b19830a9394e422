"""Benchmarks, measured side by side in one run and printed as ratios (no wall-clock limits).

1. Intake (`bench/intake.py`): joins against new cases, and alerts accepted per second through
   the intake against raw signal-with-starts at the same concurrency, on a real dev server.
2. CPU per case (`bench/cpu.py`): the emulator's process against the worker's, for the same cases.
3. Hunting parameters (`bench/hunting.py`): rendered literals against bound parameters.
4. Pacing (`bench/pacing.py`): the worker's CPU per case with every call taking a turn from the
   quota pacer, against the same cases unpaced.

Run: `make bench` (or `.venv/bin/python -m bench.run`).
"""

from __future__ import annotations

import asyncio

from bench.cpu import bench_cpu_per_case
from bench.hunting import bench_hunting_parameters
from bench.intake import bench_intake
from bench.pacing import bench_pacing_cost
from workers.logging import configure_logging
from workers.scenarios import start_dev_server


async def on_dev_server() -> None:
    async with await start_dev_server() as env:
        await bench_intake(env.client)
        await bench_cpu_per_case(env.client)
        await bench_pacing_cost(env.client)


def main() -> None:
    configure_logging("WARNING")
    asyncio.run(on_dev_server())
    bench_hunting_parameters()


if __name__ == "__main__":
    main()
