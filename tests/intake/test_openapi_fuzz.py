"""The intake API, fuzzed from its own OpenAPI document by schemathesis: no input gets a 5xx.

The app is a scenario stack's (real dev server, a worker, the emulator, dry run), and the
fuzzer also gets a copy narrowed to generic alerts for the stack's tenant, so generated
alerts start real cases; a last round sends the case operations to those cases. 503 is the one 5xx the contract allows (Temporal unreachable,
retry later); with the server up it must not occur either. Schemathesis and Hypothesis run in a
thread; every request goes back to the test's event loop, where the Temporal client lives.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from temporalio.client import Client

from tests.intake.conftest import DEFENDER, intake_client, scenario, stack_for

TENANT = "11111111-2222-3333-4444-555555555555"
EXAMPLES_PER_OPERATION = 50


def focused(document: dict[str, Any]) -> dict[str, Any]:
    """The app's own document with the alert body narrowed to generic alerts for this deployment's
    tenant, so generated alerts get past "unknown tenant" into Temporal and the worker."""
    document = copy.deepcopy(document)
    content = document["paths"]["/v1/alerts"]["post"]["requestBody"]["content"]["application/json"]
    generic = content["schema"]["anyOf"][0]
    generic["properties"]["tenant"] = {"type": "string", "enum": [TENANT]}
    generic["properties"]["ip"] = {"type": "string", "pattern": "^[0-9]{1,3}(\\.[0-9]{1,3}){3}$"}
    generic["required"] = [*generic["required"], "ip"]  # else most generated alerts name nothing
    content["schema"] = generic
    document["paths"] = {"/v1/alerts": document["paths"]["/v1/alerts"]}
    return document


async def test_no_input_makes_the_intake_answer_5xx(client: Client, cert_dir):
    loop = asyncio.get_running_loop()
    seen: dict[int, int] = {}
    failures: list[str] = []
    opened: set[str] = set()
    async with stack_for(client, scenario("fp-scanner-relay-normal-traffic"), cert_dir) as stack, \
            intake_client(stack.intake) as http:
        document = (await http.get("/openapi.json")).json()
        schema = schemathesis.openapi.from_dict(document)
        alerts_for_us = schemathesis.openapi.from_dict(focused(document))

        def send(case: Any) -> None:
            request = case.as_transport_kwargs(base_url="http://intake", headers=DEFENDER)
            request.pop("cookies", None)
            response = asyncio.run_coroutine_threadsafe(http.request(**request), loop).result(timeout=60)
            seen[response.status_code] = seen.get(response.status_code, 0) + 1
            if response.status_code == 202:
                opened.update(a["case_id"] for a in response.json()["accepted"])
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:200]}")

        def fuzz() -> None:
            # Every operation as documented (case ids are random strings: 404s); then alerts for
            # this tenant (real cases start); then the case operations again, half of them on
            # the cases just opened.
            operations = [found.ok() for found in schema.get_all_operations()]
            for operation in [*operations, *(found.ok() for found in alerts_for_us.get_all_operations())]:
                run(operation.as_strategy().map(lambda case: (case, None)))
            ids = st.sampled_from(sorted(opened)) if opened else st.none()
            for operation in operations:
                if "{case_id}" in operation.path:
                    run(st.tuples(operation.as_strategy(), st.one_of(st.none(), ids)))

        def run(strategy: Any) -> None:
            @given(pair=strategy)
            @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck))
            def check(pair: tuple[Any, str | None]) -> None:
                case, real_id = pair
                if real_id is not None:
                    case.path_parameters["case_id"] = real_id
                send(case)

            check()

        await asyncio.to_thread(fuzz)
        await _terminate_cases(client, stack.settings.temporal.task_queue)

    print(f"\nschemathesis: statuses {dict(sorted(seen.items()))}")
    assert not failures, "\n".join(failures[:10])
    # The fuzzer got past authentication and validation into Temporal, not just 401s and 422s.
    assert seen.get(202, 0) > 0 and seen.get(422, 0) > 0 and seen.get(404, 0) > 0, seen
    assert seen.get(200, 0) > 1, seen  # reads of real cases, not only /healthz


async def _terminate_cases(client: Client, queue: str) -> None:
    async for found in client.list_workflows(f"TaskQueue = '{queue}' AND ExecutionStatus = 'Running'"):
        await client.get_workflow_handle(found.id, run_id=found.run_id).terminate("fuzz test done")
