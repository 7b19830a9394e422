"""Ed25519 signatures over approval decisions: the canonical form, key encoding, sign and verify.

Pure and deterministic (the workflow's validator verifies with it; the CLI, the intake and the
scenario runner sign with it). What is signed is a domain-separation prefix and the decision as
sorted-key compact JSON, every field but the signature itself:

    quell-decision-v1\\n{"action_id":…,"approve":…,"approver":…,"case_id":…,"issued_at":…,
                         "key_id":…,"nonce":…,"plan_hash":…,"reason":…}

A public key is written `ed25519:<base64 of the raw 32 bytes>`; its key id is the first 16 hex
digits of the SHA-256 of those bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from datetime import timezone

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from workflows.types import Decision

DOMAIN = b"quell-decision-v1\n"
PREFIX = "ed25519:"


def public_key_text(key: Ed25519PublicKey) -> str:
    return PREFIX + base64.b64encode(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def _raw(text: str) -> bytes:
    if not text.startswith(PREFIX):
        raise ValueError(f"a public key is written {PREFIX}<base64>, not {text[:20]!r}")
    try:
        raw = base64.b64decode(text.removeprefix(PREFIX), validate=True)
    except binascii.Error:
        raise ValueError("the public key is not valid base64") from None
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key has 32 bytes")
    return raw


def load_public_key(text: str) -> Ed25519PublicKey:
    """Raise ValueError when `text` is not an `ed25519:` public key."""
    return Ed25519PublicKey.from_public_bytes(_raw(text))


def private_key_pem(key: Ed25519PrivateKey, passphrase: str | None = None) -> bytes:
    """PKCS#8 PEM, encrypted with `passphrase` when one is given."""
    encryption = BestAvailableEncryption(passphrase.encode()) if passphrase else NoEncryption()
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, encryption)


def load_private_key(pem: bytes, passphrase: str | None = None) -> Ed25519PrivateKey:
    """Raise ValueError when `pem` is not an Ed25519 private key, or the passphrase is wrong or
    missing."""
    try:
        key = load_pem_private_key(pem, passphrase.encode() if passphrase else None)
    except TypeError as wrong:  # encrypted without a passphrase, or a passphrase for a plain key
        raise ValueError(str(wrong)) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("not an Ed25519 private key")
    return key


def key_id(public_key: str) -> str:
    return hashlib.sha256(_raw(public_key)).hexdigest()[:16]


def signed_bytes(decision: Decision) -> bytes:
    issued = decision.issued_at.astimezone(timezone.utc).isoformat(timespec="microseconds") if decision.issued_at else None
    body = {
        "action_id": decision.action_id,
        "approve": decision.approve,
        "approver": decision.approver,
        "case_id": decision.case_id,
        "issued_at": issued,
        "key_id": decision.key_id,
        "nonce": decision.nonce,
        "plan_hash": decision.plan_hash,
        "reason": decision.reason,
    }
    return DOMAIN + json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sign(decision: Decision, private_key: Ed25519PrivateKey) -> Decision:
    """The decision with `key_id` and `signature` set (it must carry case, issued-at and nonce)."""
    if not (decision.case_id and decision.issued_at and decision.nonce):
        raise ValueError("a signed decision names its case, when it was issued and a nonce")
    keyed = decision.model_copy(update={"key_id": key_id(public_key_text(private_key.public_key())), "signature": ""})
    signature = base64.b64encode(private_key.sign(signed_bytes(keyed))).decode()
    return keyed.model_copy(update={"signature": signature})


def signature_valid(decision: Decision, public_key: str) -> bool:
    """True when `decision.signature` is `public_key`'s signature over the decision."""
    try:
        signature = base64.b64decode(decision.signature, validate=True)
        load_public_key(public_key).verify(signature, signed_bytes(decision))
    except (ValueError, binascii.Error, InvalidSignature):
        return False
    return True
