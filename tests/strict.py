"""Under `make test`, a skipped test is a failed test.

A skip when a tool is missing (mkfs.xfs, debugfs, Chromium) turns a green run into one that tested
nothing of that part, and nobody reads the "s" in a line of dots. `tools/test.py` sets
VMB_STRICT_TESTS=1; with it, every skip (pytest.skip, skipif, importorskip, a fixture that skips,
a module that skips at collection) is reported as a failure that says what is missing. A developer
running plain `pytest` still gets ordinary skips.

The only exception is a test marked `@pytest.mark.skip_allowed("why make test cannot provide it")`:
its skips stay skips, and `-ra` (pyproject.toml) lists each one with its reason at the end of the run.
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest

STRICT_VARIABLE = "VMB_STRICT_TESTS"
ALLOWED_MARKER = "skip_allowed"


def strict() -> bool:
    return os.environ.get(STRICT_VARIABLE) == "1"


def pytest_configure(config: pytest.Config) -> None:
    # Registered here rather than in pyproject.toml so the plugin works alone (its own test runs
    # it on a generated module outside this project's configuration).
    config.addinivalue_line(
        "markers",
        f"{ALLOWED_MARKER}(reason): this test may skip even under make test, because make test cannot provide "
        "what it needs (say why)",
    )


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    # A skip's longrepr is (file, line, "Skipped: <reason>").
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return reason.removeprefix("Skipped: ")


def _as_failure(report: pytest.TestReport | pytest.CollectReport) -> None:
    report.outcome = "failed"
    report.longrepr = (
        f"skipped under make test: {_skip_reason(report)} — make test must install it "
        f"(or, if make test cannot provide it, mark the test @pytest.mark.{ALLOWED_MARKER}(reason))"
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    # An xfail is reported as skipped too; it is an expectation about the code, not a missing tool.
    expected = hasattr(report, "wasxfail") or item.get_closest_marker(ALLOWED_MARKER) is not None
    if report.skipped and strict() and not expected:
        _as_failure(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    report = yield
    # A module that skips as a whole (pytest.skip(allow_module_level=True), a top-level importorskip).
    if report.skipped and strict() and collector.get_closest_marker(ALLOWED_MARKER) is None:
        _as_failure(report)
    return report
