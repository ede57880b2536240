"""Headless Debian Chromium through Playwright, and a real RQ worker process for the live server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from tools.services import terminate_processes

# Playwright's sync API keeps an event loop in the test thread; Django's ORM calls there are still
# ordinary blocking calls, so the async-safety guard does not apply.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Without these, Chromium tries to reach Google's services at every start and floods the log.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(scope="session")
def playwright_session():
    """One Playwright for the run: its sync API runs an event loop, and a second one started while it
    lives is refused. A test that needs a Chromium with other flags launches it from this one."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: install the Debian package chromium (make test does)")
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="session")
def browser(playwright_session):
    browser = playwright_session.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    yield browser
    browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    page = context.new_page()
    yield page
    context.close()


def _database_url() -> str:
    db = connection.settings_dict
    if connection.vendor != "postgresql":
        pytest.skip("a worker process needs a database it can share: run on PostgreSQL (make test does)")
    return f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


@pytest.fixture
def start_worker(live_server, redis_conn):
    """Start a real `manage.py rqworker` process on the test database, as `make run` does."""
    processes: list[subprocess.Popen] = []

    def start(*queues: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        env = {**os.environ, "DATABASE_URL": _database_url(), **(env or {})}
        proc = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "rqworker",
                *(queues or ("default", "maintenance")),
                "--worker-class",
                "rq.SimpleWorker",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        processes.append(proc)
        return proc

    yield start
    terminate_processes([proc.pid for proc in processes], timeout=15)
    for proc in processes:
        proc.wait()  # gone already: this reaps it


# Screenshots of the main pages, kept as test artifacts (CI can collect the folder).
SCREENSHOTS = Path(os.environ.get("SCREENSHOT_DIR", ROOT / "test-artifacts" / "screenshots"))


@pytest.fixture
def screenshot(page, request):
    """screenshot("overview") saves the whole page as <test name>-<n>-overview.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    taken: list[Path] = []

    def take(name: str) -> Path:
        path = SCREENSHOTS / f"{request.node.name}-{len(taken) + 1:02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        taken.append(path)
        return path

    return take
