"""Alert settings come from the environment; a weak webhook secret stops the program."""

from __future__ import annotations

from tests.factories.settings import django_check


def test_a_short_webhook_secret_is_refused(tmp_path):
    result = django_check(tmp_path, ALERT_WEBHOOK_SECRET="too-short")
    assert result.returncode == 2
    assert "ALERT_WEBHOOK_SECRET is too short: use at least 16 characters" in result.stderr
    assert "too-short" not in result.stderr


def test_a_webhook_url_must_be_http(tmp_path):
    result = django_check(tmp_path, ALERT_WEBHOOK_URL="ftp://example.com/hook")
    assert result.returncode == 2 and "ALERT_WEBHOOK_URL must start with https:// or http://" in result.stderr
