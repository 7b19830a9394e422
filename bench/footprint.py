"""Worker footprint: a `quell worker` process's resident memory (/proc/<pid>/status VmRSS) and open
file descriptors (/proc/<pid>/fd) after 100 cases and after 1,000, and the growth per 1,000: the
least-squares slope through a sample after every 100 cases from the 100th on (ten samples; two
samples alone moved by ±8 MiB between runs, as the allocator keeps or returns its arenas).

The cases are cheap but whole: a generic alert naming a connector the tenant does not have (each
a different one, so each is a case of its own). The worker resolves it against the tenant's
connectors (Exchange), sweeps the audit log (one Graph audit query; past the tenant's 200 a day,
Graph answers 429 and Search-UnifiedAuditLog answers instead), grades it needs_review, reads
the approval trust and runs the two alert write-backs, which Graph refuses (it does not know the
alert): no hunting, no writes. `CONCURRENCY` cases are open at a time.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from pathlib import Path

from temporalio.client import Client

from activities import cases
from activities.alert_parsing import from_generic
from bench.processes import emulator_process, quell_processes
from config.settings import QuotaSettings, Settings
from emulator.scenario import load_scenario
from workers.scenarios import emulator_tenant

SCENARIO = Path(__file__).parents[1] / "emulator" / "scenarios" / "fp-scanner-relay-normal-traffic.yaml"
CONCURRENCY = 25
CASE_TIMEOUT = 120.0


def footprint(pid: int) -> tuple[float, int]:
    """(resident memory in MiB, open file descriptors) of the process."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return rss_kib / 1024, len(os.listdir(f"/proc/{pid}/fd"))


async def bench_worker_footprint(client: Client, first: int = 100, total: int = 1000) -> None:
    scenario = load_scenario(SCENARIO)
    tenant = scenario.tenant.id
    async with emulator_process(SCENARIO) as emulator:
        # Unpaced: at Graph's 150 calls a minute one tenant's cases would go at 0.4 a second, and
        # the 1,000 would take 40 minutes (the pacer's own cost is bench/pacing.py's figure).
        settings = Settings(tenants=[emulator_tenant(scenario, emulator.base_url)],
                            quotas=QuotaSettings(enabled=False))
        async with quell_processes(client, settings, "footprint", intake=False) as quell:
            gate = asyncio.Semaphore(CONCURRENCY)

            async def one_case(number: int) -> None:
                alert = from_generic({"tenant": tenant, "alert_id": f"footprint-{number}",
                                      "connector": f"Retired Relay {number}"})
                async with gate:
                    case = await cases.open_case(quell.client, cases.case_input(quell.settings, alert),
                                                 quell.settings.temporal.task_queue)
                    await case.result()

            async def cases_until(start: int, end: int) -> float:
                began = time.perf_counter()
                async with asyncio.timeout(CASE_TIMEOUT + (end - start)):
                    await asyncio.gather(*(one_case(n) for n in range(start, end)))
                return (end - start) / (time.perf_counter() - began)

            pid = quell.worker.pid
            at_start = footprint(pid)
            rate_first = await cases_until(0, first)
            samples = [(first, footprint(pid))]
            began = time.perf_counter()
            for start in range(first, total, first):
                await cases_until(start, start + first)
                samples.append((start + first, footprint(pid)))
            rate_rest = (total - first) / (time.perf_counter() - began)
    counts = [n for n, _ in samples]
    rss_slope = statistics.linear_regression(counts, [rss for _, (rss, _) in samples]).slope * 1000
    fd_slope = statistics.linear_regression(counts, [fds for _, (_, fds) in samples]).slope * 1000
    (_, after_first), (_, after_total) = samples[0], samples[-1]
    rss = [rss for _, (rss, _) in samples]
    print(f"worker footprint (a quell worker process; unresolved needs_review cases, {CONCURRENCY} at a time, "
          f"{rate_first:.1f} and {rate_rest:.1f} cases/s; growth: slope through {len(samples)} samples, "
          f"one every {first} cases):")
    print(f"  resident memory  start {at_start[0]:6.1f} MiB   after {first} cases {after_first[0]:6.1f} MiB   "
          f"after {total} {after_total[0]:6.1f} MiB   growth per 1,000 cases {rss_slope:+.1f} MiB "
          f"(samples {min(rss):.1f}-{max(rss):.1f} MiB)")
    print(f"  open files       start {at_start[1]:6d}       after {first} cases {after_first[1]:6d}       "
          f"after {total} {after_total[1]:6d}       growth per 1,000 cases {fd_slope:+.1f}")
