"""Signing keys on disk: `quell keys init` writes one, `quell approve|reject|sign` read it.

An analyst's key is a PKCS#8 PEM file, mode 0600, encrypted when a passphrase is given
(`--passphrase`: from `QUELL_KEY_PASSPHRASE`, else prompted). Default place:
`$XDG_CONFIG_HOME/quell/<account>.ed25519.pem` (`~/.config/quell/…`).
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from workflows import signatures

PASSPHRASE_ENV = "QUELL_KEY_PASSPHRASE"


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "quell"


def default_key_path(account: str) -> Path:
    return config_dir() / f"{account.strip().casefold()}.ed25519.pem"


def write_key(path: Path, key: Ed25519PrivateKey, passphrase: str | None = None) -> None:
    """Write the private key to `path`, created 0600 (an existing file is never overwritten)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(signatures.private_key_pem(key, passphrase))


def write_new_key(path: Path, passphrase: str | None) -> Ed25519PrivateKey:
    """A new key pair; the private key goes to `path`."""
    key = Ed25519PrivateKey.generate()
    write_key(path, key, passphrase)
    return key


def is_encrypted(path: Path) -> bool:
    return b"ENCRYPTED" in path.read_bytes()[:64]


def read_key(path: Path, passphrase: str | None) -> Ed25519PrivateKey:
    """Raise ValueError when the file holds no Ed25519 key or the passphrase is wrong."""
    return signatures.load_private_key(path.read_bytes(), passphrase)
