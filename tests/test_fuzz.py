"""Schema fuzzing: schemathesis generates requests from our own OpenAPI document, valid and
invalid, for every operation, and checks each answer: no 5xx, a documented status code, a
documented content type, and a body that conforms to the documented schema.

Hypothesis drives each operation directly (schemathesis' pytest plugin does not load under
pytest 9 yet).
"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is in the test extra")
from hypothesis import HealthCheck, given, settings  # noqa: E402

EXAMPLES_PER_OPERATION = 60


def test_every_generated_request_gets_a_documented_answer(server):
    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} >= {
        "POST /imdb/predict", "POST /reuters/predict", "POST /boston/predict", "GET /readyz",
        "POST /v2/models/{name}/infer", "GET /v2/models/{name}", "POST /admin/reload",
    }  # fmt: skip
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None,
                  suppress_health_check=list(HealthCheck), database=None)  # fmt: skip
        def answers_as_documented(case) -> None:
            case.call_and_validate()

        answers_as_documented()
