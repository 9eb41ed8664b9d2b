"""Schemathesis over the POS API of a real agent (simulator, sandbox ledger): generated
requests, valid and invalid, to every POS route; no internal error, and every answer
(status, content type, body) as the OpenAPI document says.

Bounded to well under a minute: a few examples per operation, short device timeouts
(a generated sale that gets as far as the PIN pad waits 0.3 s for a card that never
comes and answers ``device_timeout``).

503 and 504 are contract answers here (``device_timeout`` when no card comes,
``device_unavailable``, ``ledger_unavailable``), each documented with its body; the
check that matters is that none is a 500 and that every one has the documented shape.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from pos_plugin.agent import Agent, start_simulated  # noqa: E402

POS_ROUTES = r"^/v1/(sales|balance-inquiries|health|devices|simulator)"


@pytest.fixture(scope="module")
def fuzzed_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    a = start_simulated(
        workdir=Path(tmp_path_factory.mktemp("fuzz")),
        card_timeout=0.3,
        pin_timeout=0.3,
        card_removal_timeout=0.3,
        recovery_interval=0.5,
    )
    try:
        yield a
    finally:
        a.stop()


def no_internal_error(ctx: Any, response: Any, case: Any) -> bool | None:
    """An unexpected error is a 500 ``internal_error``: never one."""
    assert response.status_code != 500, f"{case.method} {case.path}: {response.text[:300]}"
    return None


def test_pos_api_answers_as_documented(fuzzed_agent: Agent) -> None:
    """Each POS operation, a few generated cases each (driven here rather than through
    schemathesis' pytest plugin, which does not load under this pytest)."""
    api = schemathesis.openapi.from_url(fuzzed_agent.url + "/openapi.json").include(
        path_regex=POS_ROUTES
    )
    operations = [result.ok() for result in api.get_all_operations()]
    calls: list[str] = []
    assert len(operations) >= 8
    for operation in operations:
        role = "manager" if operation.path.endswith("/reversal") else "pos"
        fuzz(operation, {"Authorization": f"Bearer {fuzzed_agent.tokens[role]}"}, calls)
    assert len(calls) > 5 * len(operations)  # the run really ran
    sales = fuzzed_agent.service.journal.query("SELECT count(*) AS n FROM sales")[0]["n"]
    assert sales > 0  # some generated sales were valid and got journaled


def fuzz(operation: Any, headers: dict[str, str], calls: list[str]) -> None:
    """A few generated cases of one operation, each answer checked against the schema."""

    @given(case=operation.as_strategy())
    @settings(
        max_examples=15,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def run(case: Any) -> None:
        calls.append(case.path)
        case.call_and_validate(
            headers=headers,
            checks=[
                no_internal_error,
                status_code_conformance,
                content_type_conformance,
                response_schema_conformance,
            ],
            timeout=30,
        )

    run()
