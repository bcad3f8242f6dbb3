"""The suite's own tooling: the README's test command is `.ci/run`'s, the scheduler keeps a module
that shares a worker in one piece and spreads the rest a test at a time, and `tests.tiers` fails
unless every tier passed, a tier that ran nothing included."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.scheduling import SHARED_FIXTURE_MODULES, SuiteScheduling
from tests.tiers import Tier, run, verdict

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_test_command_is_what_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"\*\*Run the tests\*\*.*?```sh\n(.*?)\n```", readme, re.S)
    assert block is not None
    ci_last = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert block.group(1) == ci_last


def test_a_shared_module_is_one_unit_and_any_other_test_its_own() -> None:
    split = SuiteScheduling._split_scope
    assert "tests/integration/test_weekly_run.py" in SHARED_FIXTURE_MODULES
    assert split(None, "tests/integration/test_weekly_run.py::test_tenant_filter") == \
        "tests/integration/test_weekly_run.py"  # type: ignore[arg-type]
    one = "tests/integration/test_reliability_quick.py::test_quick_scenario[rebalance]"
    assert split(None, one) == one  # type: ignore[arg-type]


def test_every_shared_module_exists() -> None:
    assert all((ROOT / m).is_file() for m in SHARED_FIXTURE_MODULES)


def test_tiers_pass_only_when_every_tier_passed(tmp_path: Path) -> None:
    (tmp_path / "test_ok.py").write_text("def test_ok():\n    assert True\n")
    (tmp_path / "test_no.py").write_text("def test_no():\n    assert False\n")
    opts = ("-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path))
    ok = Tier("ok", (str(tmp_path / "test_ok.py"), *opts))
    assert run([ok, Tier("also", (str(tmp_path / "test_ok.py"), *opts))], []) == 0
    assert run([ok, Tier("no", (str(tmp_path / "test_no.py"), *opts))], []) == 1
    assert run([ok, Tier("empty", (str(tmp_path / "test_ok.py"), "-k", "nothing", *opts))], []) == 1
    assert verdict(5).startswith("FAILED: no test ran")
