"""Every pydantic model a workflow decodes has its schema built at import. A model left incomplete
(a field naming a model defined further down) is not completed by the payload converter's
TypeAdapter, so each decode built its schema again: 0.36 ms on the host for CaseInput, and half of
a case's first workflow task in the sandbox (1.7 of 3.5 ms, measured in a replay)."""

import inspect

from pydantic import BaseModel

import workflows.types as types


def test_every_model_of_workflows_types_is_complete_at_import():
    models = [m for _, m in inspect.getmembers(types, inspect.isclass)
              if issubclass(m, BaseModel) and m.__module__ == types.__name__]
    assert len(models) > 50
    assert [m.__name__ for m in models if not m.__pydantic_complete__] == []
