"""`manage.py audit`: the same filters and CSV as the page, from a shell."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from audit.actions import record
from audit.models import AuditEntry

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("audit", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def entries():
    record("alice", "restore.files", target_label="=cmd|' /C calc'!A0", details={"paths": ["/Zürich"]})
    old = record("bob", "vault.settings", target_label="Vault settings", details={"changes": {"kind": ["a", "b"]}})
    AuditEntry.objects.filter(pk=old.pk).update(created=timezone.now() - dt.timedelta(days=5))


def test_it_prints_every_entry_newest_first(entries):
    lines = run().splitlines()
    assert len(lines) == 2
    assert "restore.files" in lines[0] and "vault.settings" in lines[1]


def test_since_and_action_filter(entries):
    since = (timezone.localdate() - dt.timedelta(days=1)).isoformat()
    assert "vault.settings" not in run("--since", since)
    out = run("--action", "vault")
    assert "vault.settings" in out and "restore.files" not in out


def test_csv_is_guarded_like_the_download(entries):
    rows = list(csv.reader(io.StringIO(run("--csv", "--action", "restore"))))
    assert rows[0][0].startswith("Time (") and not rows[0][0].startswith("\ufeff")
    assert rows[1][2] == "restore.files" and rows[1][5] == "'=cmd|' /C calc'!A0"
    assert "Zürich" in rows[1][6]


def test_a_bad_date_is_refused():
    with pytest.raises(CommandError, match="YYYY-MM-DD"):
        run("--since", "yesterday")
