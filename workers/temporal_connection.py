"""The one way quell connects to Temporal: worker, intake, poller commands, CLI, scenario runner and demo.

From settings `[temporal]` (address, namespace, TLS with a server CA and server name, an mTLS
client certificate, a Temporal Cloud API key) and `[codec]` (payload encryption).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes
from temporalio.runtime import Runtime
from temporalio.service import TLSConfig

from config.settings import CodecSettings, Settings, TemporalSettings
from workers.codec import encryption_codec
from workers.tracing import tracing_interceptors


def data_converter(codec: CodecSettings) -> DataConverter:
    """Pydantic payloads, encrypted when keys are configured; failures then carry their message and
    stack trace in an (encrypted) payload as well, so error text in history is ciphertext too."""
    encryption = encryption_codec(codec)
    if encryption is None:
        return pydantic_data_converter
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=encryption,
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


def _read(path: Path | None, setting: str) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as error:
        raise ValueError(f"temporal.{setting}: cannot read {path} ({error.strerror})") from None


def tls_config(temporal: TemporalSettings) -> TLSConfig | bool:
    if not temporal.uses_tls:
        return False
    return TLSConfig(
        server_root_ca_cert=_read(temporal.server_ca_cert_path, "server_ca_cert_path"),
        domain=temporal.server_name,
        client_cert=_read(temporal.client_cert_path, "client_cert_path"),
        client_private_key=_read(temporal.client_key_path, "client_key_path"),
    )


async def connect(settings: Settings, address: str | None = None, runtime: Runtime | None = None) -> Client:
    """A client for settings' Temporal (or `address`, same credentials), with quell's data converter
    and, when `[tracing]` is on, the tracing interceptor; `runtime` serves its metrics (workers/metrics.py)."""
    temporal = settings.temporal
    return await Client.connect(
        address or temporal.address,
        namespace=temporal.namespace,
        tls=tls_config(temporal),
        api_key=temporal.api_key.get_secret_value() if temporal.api_key else None,
        data_converter=data_converter(settings.codec),
        interceptors=tracing_interceptors(settings.tracing),
        runtime=runtime,
    )
