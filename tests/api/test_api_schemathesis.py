"""Schemathesis against the project's own OpenAPI document, over real HTTP, on SQLite and PostgreSQL:
no operation of `/v1` answers 5xx or anything its document does not describe (status, headers,
content type, body schema); invalid input is refused with a documented 4xx; auth is enforced.

Each operation is driven with schemathesis' positive and negative case strategies under
hypothesis, and every answer goes through schemathesis' default checks (`call_and_validate`).
(Schemathesis' lazy pytest fixture loader does not run on this pytest, hence the explicit loop.)
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from tests.api.conftest import WRITE_KEY, Served

AUTH = {"Authorization": f"Bearer {WRITE_KEY}"}
EXAMPLES = 20  # per operation and mode: 16 operations x 2 modes x 2 backends


def fuzz(operation: schemathesis.APIOperation, mode: GenerationMode) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def check(case: schemathesis.Case) -> None:
        # Our real key in place of a generated one; a negative case that dropped the header on
        # purpose goes without it, and must be refused.
        if mode is GenerationMode.POSITIVE or "Authorization" in (case.headers or {}):
            case.headers = {**(case.headers or {}), **AUTH}
        case.call_and_validate()

    check()


def test_every_v1_answer_is_documented_and_none_is_a_server_error(served: Served) -> None:
    schema = schemathesis.openapi.from_url(f"{served.url}/openapi.json").include(path_regex="^/v1/")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 16, [op.label for op in operations]  # every /v1 route
    for operation in operations:
        for mode in GenerationMode:
            fuzz(operation, mode)
