"""AES-256-GCM payload codec: what quell stores in Temporal is ciphertext, under keys with ids so keys rotate.

The wire format is that of Temporal's encryption samples (Go, TypeScript, Python), so their codec
servers and tools read quell's payloads: metadata `encoding: binary/encrypted` and
`encryption-key-id: <id>` (both in the clear), data = 12-byte random nonce + AES-GCM ciphertext
and tag of the serialized original payload. Encode uses the current key; decode any configured
key. A payload that is not encrypted (written before encryption was turned on) passes decode
unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf.message import DecodeError
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

from config.settings import CodecSettings

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
NONCE_BYTES = 12


class PayloadDecryptionError(Exception):
    """An encrypted payload no configured key opens: an unknown key id, or altered data."""


class EncryptionCodec(PayloadCodec):
    def __init__(self, keys: Mapping[str, bytes], current: str) -> None:
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self._current = current

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        cipher = self._ciphers[self._current]
        metadata = {"encoding": ENCODING, KEY_ID: self._current.encode()}
        encoded = []
        for payload in payloads:
            nonce = os.urandom(NONCE_BYTES)
            sealed = cipher.encrypt(nonce, payload.SerializeToString(), None)
            encoded.append(Payload(metadata=metadata, data=nonce + sealed))
        return encoded

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._open(payload) for payload in payloads]

    def _open(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        key_id = payload.metadata.get(KEY_ID, b"")[:64].decode("utf-8", "replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise PayloadDecryptionError(f"payload encrypted with key {key_id!r}, which is not configured")
        nonce, sealed = payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:]
        try:
            return Payload.FromString(cipher.decrypt(nonce, sealed, None))
        except (InvalidTag, ValueError, DecodeError):  # ValueError: data too short to hold a nonce
            raise PayloadDecryptionError(f"payload under key {key_id!r} does not decrypt: altered, or another key") from None


def encryption_codec(settings: CodecSettings) -> EncryptionCodec | None:
    """The codec of the configured keys, or None when no key is configured (payloads in the clear)."""
    if settings.current is None:  # settings make it None exactly when there are no keys
        return None
    return EncryptionCodec(settings.key_bytes(), settings.current)
