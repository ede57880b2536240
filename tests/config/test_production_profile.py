"""The production profile: served over HTTPS (SECURE_COOKIES=true), `manage.py check --deploy` has
nothing to say; behind a TLS proxy (BEHIND_PROXY=true) the proxy's X-Forwarded-Proto is trusted; every
page carries a Content-Security-Policy that lets only this server's own files run or style it, and no
template holds the inline script, style or event handler that policy would block."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.factories.settings import ROOT, django_check

TEMPLATE_DIRS = [ROOT / "templates", *sorted(ROOT.glob("*/templates"))]
INLINE = {
    "an inline script": re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I),
    "a <style> element": re.compile(r"<style\b", re.I),
    "a style attribute": re.compile(r"\sstyle\s*=\s*[\"']", re.I),
    "an event-handler attribute": re.compile(r"\son[a-z]+\s*=\s*[\"']", re.I),
    "an hx-on attribute": re.compile(r"\shx-on", re.I),
    "a javascript: URL": re.compile(r"javascript:", re.I),
}


def test_check_deploy_is_clean_in_the_production_profile(tmp_path):
    result = django_check(tmp_path, "--deploy", "--fail-level", "WARNING", SECURE_COOKIES="true", BEHIND_PROXY="true")

    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout, result.stdout + result.stderr


def test_check_deploy_still_warns_without_https(tmp_path):
    result = django_check(tmp_path, "--deploy", "--fail-level", "WARNING")

    assert result.returncode != 0
    assert "security.W008" in result.stderr and "security.W012" in result.stderr


def settings_of(tmp_path: Path, *names: str, **env: str) -> list[str]:
    """The settings a fresh process reads with this environment, one repr per line."""
    code = "from django.conf import settings; " + "; ".join(f"print(repr(settings.{n}))" for n in names)
    base = {"DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "--verbosity", "0", "-c", code],
        cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return result.stdout.splitlines()


def test_behind_a_proxy_the_forwarded_protocol_is_trusted_and_https_enforced(tmp_path):
    assert settings_of(
        tmp_path,
        "SECURE_PROXY_SSL_HEADER",
        "SECURE_SSL_REDIRECT",
        "SESSION_COOKIE_SECURE",
        "CSRF_COOKIE_SECURE",
        "SECURE_HSTS_SECONDS",
        SECURE_COOKIES="true",
        BEHIND_PROXY="true",
        HSTS_SECONDS="600",
    ) == ["('HTTP_X_FORWARDED_PROTO', 'https')", "True", "True", "True", "600"]


def test_without_a_proxy_no_forwarded_header_is_trusted(tmp_path):
    assert settings_of(tmp_path, "SECURE_PROXY_SSL_HEADER", "SECURE_HSTS_SECONDS") == ["None", "0"]


@pytest.mark.django_db
def test_pages_carry_a_policy_allowing_only_this_servers_own_files(as_admin):
    response = as_admin.get("/")

    policy = dict(part.strip().split(" ", 1) for part in response["Content-Security-Policy"].split(";"))
    assert policy["default-src"] == policy["script-src"] == policy["style-src"] == "'self'"
    assert policy["object-src"] == policy["frame-ancestors"] == "'none'"
    assert policy["form-action"] == policy["base-uri"] == "'self'"
    assert not re.search(r"unsafe|https?:|\*", response["Content-Security-Policy"])
    assert response.status_code == 200


@pytest.mark.django_db
def test_the_api_documentation_loads_its_script_from_this_server(as_admin):
    page = as_admin.get("/api/docs/").content.decode()
    assert not INLINE["an inline script"].search(page) and not INLINE["a <style> element"].search(page)
    script = re.search(r'<script src="(/api/docs/\?script=)"', page)
    assert script and as_admin.get(script.group(1)).status_code == 200


def test_no_template_holds_what_the_policy_blocks():
    found = [
        f"{path.relative_to(ROOT)}: {what}"
        for folder in TEMPLATE_DIRS
        for path in sorted(folder.rglob("*.html"))
        for what, pattern in INLINE.items()
        if pattern.search(path.read_text())
    ]
    assert found == []
