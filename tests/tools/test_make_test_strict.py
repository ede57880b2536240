"""`make test` cannot go green by skipping: tests/strict.py, seen from outside.

Each test runs pytest in a subprocess on a small generated module, with and without the variable
that tools/test.py sets, and reads the outcome of every test from a JUnit XML report.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.factories.images import TOOL_DIRS, TOOL_PACKAGES
from tools import test as make_test

ROOT = Path(__file__).resolve().parents[2]
MESSAGE = "skipped under make test: frobnicate is not installed — make test must install it"

SAMPLE = """
import pytest


@pytest.fixture
def frobnicator():
    pytest.skip("frobnicate is not installed")


def test_skips_in_its_body():
    pytest.skip("frobnicate is not installed")


@pytest.mark.skipif(True, reason="frobnicate is not installed")
def test_skipped_by_a_marker():
    pass


def test_skipped_by_its_fixture(frobnicator):
    pass


def test_skipped_by_importorskip():
    pytest.importorskip("frobnicate", reason="frobnicate is not installed")


@pytest.mark.skip_allowed("make test cannot attach a tape drive")
def test_allowed_to_skip():
    pytest.skip("no tape drive on this machine")


@pytest.mark.xfail(reason="a known bug", strict=True)
def test_expected_to_fail():
    assert False


def test_passes():
    pass
"""

SKIPPING_MODULE = """
import pytest

pytest.skip("frobnicate is not installed", allow_module_level=True)


def test_never_collected():
    pass
"""


@dataclass
class Run:
    returncode: int
    output: str
    outcomes: dict[str, str]  # test name -> passed | failed | skipped | xfailed
    messages: dict[str, str]


def run_pytest(tmp_path: Path, source: str, *, strict: bool) -> Run:
    module = tmp_path / "test_sample.py"
    module.write_text(source)
    # The project's own addopts (-ra lists every skip with its reason), outside its Django setup.
    addopts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["addopts"]
    ini = tmp_path / "pytest.ini"
    ini.write_text(f"[pytest]\naddopts = {addopts}\n")
    report = tmp_path / "report.xml"
    env = {key: value for key, value in os.environ.items() if key != "VMB_STRICT_TESTS"}
    env["PYTHONPATH"] = str(ROOT)
    if strict:
        env["VMB_STRICT_TESTS"] = "1"
    command = [sys.executable, "-m", "pytest", "-c", str(ini), "--rootdir", str(tmp_path)]
    command += ["-p", "tests.strict", "-p", "no:django", "-p", "no:cacheprovider", f"--junitxml={report}", str(module)]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    outcomes, messages = read_report(report)
    return Run(done.returncode, done.stdout + done.stderr, outcomes, messages)


def read_report(report: Path) -> tuple[dict[str, str], dict[str, str]]:
    outcomes: dict[str, str] = {}
    messages: dict[str, str] = {}
    for case in ET.parse(report).getroot().iter("testcase"):  # noqa: S314 - written by our own pytest run
        name = case.get("name", "")
        outcomes[name], messages[name] = "passed", ""
        for child in case:
            if child.tag in ("failure", "error"):
                outcomes[name] = "failed"
            elif child.tag == "skipped":
                outcomes[name] = "xfailed" if child.get("type") == "pytest.xfail" else "skipped"
            else:
                continue
            messages[name] += (child.get("message") or "") + (child.text or "")
    return outcomes, messages


SKIPPING_TESTS = (
    "test_skips_in_its_body",
    "test_skipped_by_a_marker",
    "test_skipped_by_its_fixture",
    "test_skipped_by_importorskip",
)


def test_outside_make_test_a_skip_stays_a_skip(tmp_path):
    run = run_pytest(tmp_path, SAMPLE, strict=False)

    assert run.returncode == 0, run.output
    assert {name: run.outcomes[name] for name in SKIPPING_TESTS} == dict.fromkeys(SKIPPING_TESTS, "skipped")
    assert run.outcomes["test_allowed_to_skip"] == "skipped"


def test_under_make_test_every_kind_of_skip_fails_and_says_what_is_missing(tmp_path):
    run = run_pytest(tmp_path, SAMPLE, strict=True)

    assert run.returncode == 1, run.output
    assert {name: run.outcomes[name] for name in SKIPPING_TESTS} == dict.fromkeys(SKIPPING_TESTS, "failed")
    for name in SKIPPING_TESTS:
        assert MESSAGE in run.messages[name], (name, run.messages[name])
    assert MESSAGE in run.output  # in the terminal too, where a developer reads it


def test_under_make_test_an_allowed_skip_stays_a_skip_and_is_listed_with_its_reason(tmp_path):
    run = run_pytest(tmp_path, SAMPLE, strict=True)

    assert run.outcomes["test_allowed_to_skip"] == "skipped"
    assert "SKIPPED [1] test_sample.py" in run.output and "no tape drive on this machine" in run.output


def test_under_make_test_an_xfail_and_a_pass_are_left_alone(tmp_path):
    run = run_pytest(tmp_path, SAMPLE, strict=True)

    assert (run.outcomes["test_expected_to_fail"], run.outcomes["test_passes"]) == ("xfailed", "passed")


def test_under_make_test_a_module_that_skips_whole_fails_its_collection(tmp_path):
    relaxed = run_pytest(tmp_path, SKIPPING_MODULE, strict=False)
    assert relaxed.returncode == pytest.ExitCode.NO_TESTS_COLLECTED and "1 skipped" in relaxed.output

    run = run_pytest(tmp_path, SKIPPING_MODULE, strict=True)

    # A collection error stops the whole run, as any broken test module does.
    assert run.returncode == pytest.ExitCode.INTERRUPTED, run.output
    assert MESSAGE in run.output and "1 error" in run.output


def test_make_test_runs_the_suite_strictly(tmp_path):
    assert make_test.suite_environment("redis://unused", tmp_path)["VMB_STRICT_TESTS"] == "1"


def packages_shipping(tool: str) -> set[str]:
    """The Debian packages whose programs include `tool`, from dpkg's own records (/sbin or /usr/sbin alike)."""
    found = subprocess.run(["dpkg", "-S", f"*/{tool}"], capture_output=True, text=True).stdout.splitlines()
    packages: set[str] = set()
    for line in found:
        names, _, path = line.rpartition(": ")
        if Path(path).name == tool and Path(path).parent.name in ("bin", "sbin"):
            packages.update(name.strip() for name in names.split(","))
    return packages


def test_each_tool_the_tests_run_comes_from_a_package_that_make_test_installs():
    listing = [str(ROOT / "tools" / "system-packages.sh"), "test", "--list"]
    installed_by_make_test = set(subprocess.run(listing, capture_output=True, text=True, check=True).stdout.split())
    for tool, package in {**TOOL_PACKAGES, "chromium": "chromium"}.items():
        assert package in installed_by_make_test, f"{tool}: make test does not install {package}"
        assert shutil.which(tool, path=TOOL_DIRS), f"{tool} is missing although make test installs {package}"
        assert package in packages_shipping(tool), f"{tool} comes from {packages_shipping(tool)}, not {package}"
