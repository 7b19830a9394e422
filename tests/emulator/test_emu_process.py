"""`quell emulator` as a process: it stops promptly when told to, with clients still connected."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx

from emulator.tls import ensure_certificates
from tests.conftest import PROJECT_SCENARIOS, eventually, free_port

QUELL = Path(sys.executable).parent / "quell"
STOPPED_WITHIN = 10.0
"""Seconds: the emulator drops connections after a 1 s grace; asyncio's TLS shutdown alone waits 30 s."""


async def test_the_emulator_stops_within_seconds_while_a_keep_alive_client_stays_connected(cert_dir: Path):
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        str(QUELL), "emulator", "--scenario", str(PROJECT_SCENARIOS / "tp-hijacked-hybrid-connector.yaml"),
        "--port", str(port), "--cert-dir", str(cert_dir),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    base = f"https://127.0.0.1:{port}"
    async with httpx.AsyncClient(verify=str(ensure_certificates(cert_dir).ca_cert)) as http:
        try:
            async def health() -> int:
                try:
                    return (await http.get(f"{base}/_emulator/healthz")).status_code
                except httpx.TransportError:
                    return 0

            await eventually(health, lambda status: status == 200, timeout=60)
            # The client keeps its TLS connection open and reads nothing while the emulator stops.
            process.terminate()
            async with asyncio.timeout(STOPPED_WITHIN):
                await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
