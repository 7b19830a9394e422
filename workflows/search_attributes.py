"""Typed search attributes: what the Temporal UI and `quell cases` filter on.

The server indexes them, so the payload codec cannot encrypt them: they hold ids and states
only, no secrets and no personal data. The tenant id names an organisation; the connector is
named by its Guid (patch `connector-guid-attribute`; cases started before it hold the name), so
no case value is readable in an exported history (tests/codec checks it).
"""

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.common import SearchAttributeKey

TENANT = SearchAttributeKey.for_keyword("QuellTenant")
CONNECTOR = SearchAttributeKey.for_keyword("QuellConnector")
VERDICT = SearchAttributeKey.for_keyword("QuellVerdict")
STAGE = SearchAttributeKey.for_keyword("QuellStage")
PENDING_APPROVAL = SearchAttributeKey.for_bool("QuellPendingApproval")

ALL = (TENANT, CONNECTOR, VERDICT, STAGE, PENDING_APPROVAL)


def dev_server_flags() -> list[str]:
    """`temporal server start-dev` arguments that register every attribute."""
    kinds = {"KEYWORD": "Keyword", "BOOL": "Bool"}
    return [
        arg
        for key in ALL
        for arg in ("--search-attribute", f"{key.name}={kinds[key.indexed_value_type.name]}")
    ]


def indexed_value_types() -> dict[str, IndexedValueType.ValueType]:
    """Name -> type, as the operator service's AddSearchAttributes takes them."""
    kinds = {"KEYWORD": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD, "BOOL": IndexedValueType.INDEXED_VALUE_TYPE_BOOL}
    return {key.name: kinds[key.indexed_value_type.name] for key in ALL}
