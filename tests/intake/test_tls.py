"""`quell intake` serves HTTPS itself when `intake.ssl_certfile` and `intake.ssl_keyfile` are set."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import httpx

from emulator.tls import ensure_certificates
from tests.conftest import free_port


async def test_quell_intake_serves_https_with_the_configured_certificate(cert_dir: Path, tmp_path: Path):
    certs = ensure_certificates(cert_dir)
    config = tmp_path / "quell.toml"
    config.write_text(f'[intake]\nssl_certfile = "{certs.server_cert}"\nssl_keyfile = "{certs.server_key}"\n')
    port = free_port()
    quell = Path(sys.executable).parent / "quell"
    process = await asyncio.create_subprocess_exec(
        str(quell), "intake", "--port", str(port), env={**os.environ, "QUELL_CONFIG": str(config)},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(60):
            assert process.stderr is not None
            while b"Uvicorn running on https://" not in (line := await process.stderr.readline()):
                assert line, "quell intake exited before serving"
        async with httpx.AsyncClient(verify=str(certs.ca_cert)) as http:
            response = await http.get(f"https://127.0.0.1:{port}/healthz")
        assert response.json() == {"status": "ok"}
    finally:
        process.terminate()
        await process.wait()
