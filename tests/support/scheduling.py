"""How the suite's tests are spread over pytest-xdist's processes (`pytest -n N`).

xdist's default (`--dist load`) hands each process a first chunk of a quarter of the collection
in collection order: one process got nearly every broker test (they sit together, between
`tests/agents` and `tests/unit`) and ran them one after the other while the other finished the
unit tests and waited (the first tier: 673 s, at half a core). `--dist worksteal` balances, but
splits a module whose tests share a module-scoped fixture (a worker process fed a scenario,
10–25 s to build): the fixture is built again in each process, and again whenever the process
comes back to that module after another one, where it meets its own topics on the same broker.

So here a test is a unit of work of its own, and the scheduler hands them out a few at a time as
processes free up, except that a module whose tests share a fixture wider than a test is one unit
(`SHARED_FIXTURE_MODULES`, checked at collection through `shared_fixture_problems`). Units go out
in collection order: the in-process agent tests, the broker tests, then the unit tests, short
ones that fill the gaps at the end."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from xdist.remote import Producer
from xdist.scheduler import LoadScopeScheduling

# modules whose tests share a module-scoped fixture: each runs in one process, in one piece
SHARED_FIXTURE_MODULES = frozenset({
    "tests/integration/test_continuous.py",
    "tests/integration/test_deploy.py",
    "tests/integration/test_http_caller.py",
    "tests/integration/test_http_fuzz.py",
    "tests/integration/test_incidents.py",
    "tests/integration/test_kafka_sasl_ssl.py",
    "tests/integration/test_outcome_clock.py",
    "tests/integration/test_prometheus_dashboards.py",
    "tests/integration/test_weekly_run.py",
    "tests/unit/test_auth.py",
    "tests/unit/test_offline_cli.py",
    "tests/unit/test_openapi.py",
})

WIDER_THAN_A_TEST = ("module", "package", "class")


def module_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


class SuiteScheduling(LoadScopeScheduling):
    """xdist's scope scheduler, with a scope per test except in `SHARED_FIXTURE_MODULES`, and the
    scopes in collection order (not xdist's largest-first, which would put the 42 quick queries
    of the dashboard module before every long broker test)."""

    def __init__(self, config: pytest.Config, log: Producer | None = None) -> None:
        super().__init__(config, log)
        config.option.loadscopereorder = False  # read by schedule(): keep collection order

    def _split_scope(self, nodeid: str) -> str:
        module = module_of(nodeid)
        return module if module in SHARED_FIXTURE_MODULES else nodeid


def shared_fixture_problems(items: Iterable[pytest.Item]) -> list[str]:
    """Tests that use a fixture wider than a test in a module the scheduler splits: each process
    running one of them would build that fixture again."""
    problems = set()
    for item in items:
        if module_of(item.nodeid) in SHARED_FIXTURE_MODULES:
            continue
        info = getattr(item, "_fixtureinfo", None)
        for name, defs in (info.name2fixturedefs.items() if info is not None else ()):
            if defs and defs[-1].scope in WIDER_THAN_A_TEST:
                problems.add(f"{module_of(item.nodeid)} (fixture {name!r}, scope {defs[-1].scope})")
    return sorted(problems)
