"""Shared test settings. In CI (CI=true) a skipped test fails the run: every tool a test needs is
installed by .ci/run, so a skip there means a missing install step, not an optional test."""
from __future__ import annotations

import os

import pytest

_INTEGRATION = os.path.join("tests", "integration") + os.sep


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Everything under tests/integration/ drives real tools: marked `integration` (`-m "not integration"`: fast loop)."""
    for item in items:
        if _INTEGRATION in str(item.path):
            item.add_marker(pytest.mark.integration)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("CI", "").lower() not in ("1", "true", "yes"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped:
        reporter.write_line(f"CI: {skipped} test(s) skipped; a skipped test is a failure in CI", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
