"""Multi-valued connector properties have one definition, and audit parameters one normalisation."""

from datetime import UTC, datetime

from emulator.state import DEFAULTS
from workflows.types import MULTI_VALUED, ConnectorChange


def test_audit_parameters_are_normalised_once_when_the_change_is_built():
    change = ConnectorChange(at=datetime(2026, 11, 20, tzinfo=UTC), operation="Set-InboundConnector",
                             actor="helpdesk.op@contoso.com", parameters={
        "Identity": "Contoso Hybrid",
        "SenderIPAddresses": "203.0.113.5, 203.0.113.6",
        "SenderDomains": "smtp:*;1,smtp:contoso.com;1",
        "EFSkipMailGateway": None,
        "RestrictDomainsToIPAddresses": "True",
        "TrustedOrganizations": [" fabrikam.com "],
    })

    assert change.parameters == {
        "Identity": "Contoso Hybrid",
        "SenderIPAddresses": ["203.0.113.5", "203.0.113.6"],
        "SenderDomains": ["smtp:*;1", "smtp:contoso.com;1"],  # split on "," only
        "EFSkipMailGateway": [],
        "RestrictDomainsToIPAddresses": True,
        "TrustedOrganizations": ["fabrikam.com"],
    }
    # Decoding a normalised change (a stored activity result) leaves it as it is.
    assert ConnectorChange.model_validate(change.model_dump(mode="json")) == change


def test_the_emulator_types_connector_properties_by_the_same_definition():
    for direction, defaults in DEFAULTS.items():
        lists = {name.casefold() for name, value in defaults.items() if isinstance(value, list)}
        assert lists == {name.casefold() for name in defaults} & MULTI_VALUED, direction
