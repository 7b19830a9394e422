"""Analysts whose key pairs are made at run time: the scenario runner, the demo and the tests
answer approvals with them, signed, as a person does with `quell keys init` and `quell approve`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import SecretStr

from workflows import signatures
from workflows.types import ApproverKey


@dataclass(frozen=True)
class Analysts:
    keys: dict[str, Ed25519PrivateKey]
    """Each analyst's private key, by account."""

    @classmethod
    def generate(cls, accounts: Iterable[str]) -> Analysts:
        return cls({account: Ed25519PrivateKey.generate() for account in accounts})

    def approvers(self) -> list[ApproverKey]:
        """The `approval.approvers` entries a config lists for them."""
        return [
            ApproverKey(account=account, public_key=signatures.public_key_text(key.public_key()))
            for account, key in self.keys.items()
        ]


@dataclass(frozen=True)
class ApiKey:
    """A key pair for the approvals API: `intake.signing_key` and `approval.api_public_key`."""

    private_pem: SecretStr
    public_key: str

    @classmethod
    def generate(cls) -> ApiKey:
        key = Ed25519PrivateKey.generate()
        return cls(SecretStr(signatures.private_key_pem(key).decode()), signatures.public_key_text(key.public_key()))
