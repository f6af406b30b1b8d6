"""The ``integration`` marker rule of tests/conftest.py: what it marks, and that its lists name real tests."""

from __future__ import annotations

import re
import subprocess

from tests import conftest
from tests.conftest import INTEGRATION_FIXTURES, INTEGRATION_TESTS, REPO, run_cli


def _pure() -> int:
    return sum(range(3))


def _through_a_helper() -> None:
    _pure()
    _starts_the_cli()


def _starts_the_cli() -> None:
    run_cli("--help")


def _starts_a_process() -> None:
    subprocess.run(["true"], check=False)


def test_the_rule_follows_calls_into_helpers_of_the_module() -> None:
    # looked up by name, so that this test itself calls none of them (and stays a fast unit test)
    helpers = {name: f for name, f in globals().items() if name.startswith("_")}
    assert not conftest._runs_integration(helpers["_pure"], set())
    assert conftest._runs_integration(helpers["_starts_the_cli"], set())
    assert conftest._runs_integration(helpers["_through_a_helper"], set())
    assert conftest._runs_integration(helpers["_starts_a_process"], set())


def test_the_named_tests_and_fixtures_exist() -> None:
    for entry in sorted(INTEGRATION_TESTS | INTEGRATION_FIXTURES):
        file, name = entry.split("::")
        source = (REPO / "tests" / file).read_text(encoding="utf-8")
        assert re.search(rf"^def {re.escape(name.split('[')[0])}\(", source, re.M), entry
