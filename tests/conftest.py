"""Shared test settings. In CI (CI=true) a skipped test fails the run: every tool a test needs is
installed by .ci/run, so a skip there means a missing install step, not an optional test."""
from __future__ import annotations

import os

import pytest


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("CI", "").lower() not in ("1", "true", "yes"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped:
        reporter.write_line(f"CI: {skipped} test(s) skipped; a skipped test is a failure in CI", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
