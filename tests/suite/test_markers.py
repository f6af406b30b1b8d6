"""The ``integration`` marker rule (tests/support/markers.py): what it marks, and that its lists name real tests."""

from __future__ import annotations

import re
import subprocess

from support import REPO, find_test_file, run_cli
from support.markers import INTEGRATION_FIXTURES, INTEGRATION_TESTS, runs_integration


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
    assert not runs_integration(helpers["_pure"], set())
    assert runs_integration(helpers["_starts_the_cli"], set())
    assert runs_integration(helpers["_through_a_helper"], set())
    assert runs_integration(helpers["_starts_a_process"], set())


def test_the_named_tests_and_fixtures_exist() -> None:
    for entry in sorted(INTEGRATION_TESTS | INTEGRATION_FIXTURES):
        file, name = entry.split("::")
        source = find_test_file(file).read_text(encoding="utf-8")
        assert re.search(rf"^def {re.escape(name.split('[')[0])}\(", source, re.M), entry


def test_test_file_names_are_unique() -> None:
    # the lists above name a file without its folder
    names = [p.name for p in (REPO / "tests").glob("**/test_*.py")]
    assert len(names) == len(set(names)), sorted(n for n in set(names) if names.count(n) > 1)
