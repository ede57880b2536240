"""The audit log page, its HTMX fragment and its CSV export: who may read them, filters, paging, escaping."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from django.urls import reverse
from django.utils import timezone

from audit.actions import record
from audit.models import AuditEntry

pytestmark = pytest.mark.django_db
HX = {"HX-Request": "true"}


def entry(action: str, *, actor="alice", label="", days_ago: float = 0, **details):
    row = record(actor, action, target_label=label, details=details)
    if days_ago:
        AuditEntry.objects.filter(pk=row.pk).update(created=timezone.now() - dt.timedelta(days=days_ago))
    return row


def read_csv(response) -> list[list[str]]:
    body = b"".join(response.streaming_content)
    assert body.startswith(b"\xef\xbb\xbf"), "UTF-8 byte-order mark for Excel"
    return list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))


def listed_actions(response) -> list[str]:
    return [row.action for row, _ in response.context["rows"]]


@pytest.fixture
def sample():
    """A handful of entries of several kinds, actors and ages (the personas' logins come on top)."""
    entry("restore.files", label="web-01", paths=["/etc/hosts"])
    entry("restore.vm", actor="bob", label="db-01", days_ago=3)
    entry("protection.group_update", label="Prod", days_ago=10, schedule=["daily 22:00", "daily 23:00"])
    entry("point.lock", actor="command line", label="web-01 2025-01-01", days_ago=40)
    entry("vault.settings", label="Vault settings", changes={"kind": ["none", "directory"]})


@pytest.mark.parametrize("url", [reverse("audit:index"), reverse("audit:export")])
def test_helpdesk_and_users_without_a_role_are_refused_pages_fragments_and_exports(as_helpdesk, as_norole, url):
    for client in (as_helpdesk, as_norole):
        assert client.get(url).status_code == 403
        assert client.get(url, headers=HX).status_code == 403
        assert client.get(url + "?action=auth").status_code == 403


def test_anonymous_visitors_are_sent_to_log_in(client):
    response = client.get(reverse("audit:export"))
    assert response.status_code == 302 and response.url.startswith(reverse("login"))


def test_an_auditor_reads_the_log_newest_first_and_exports_it(as_auditor, sample):
    response = as_auditor.get(reverse("audit:index"))
    assert response.status_code == 200
    times = [row.created for row, _ in response.context["rows"]]
    assert times == sorted(times, reverse=True)
    assert {"restore.files", "point.lock", "auth.login"} <= set(listed_actions(response))
    assert b'href="/audit/"' in response.content  # the nav link

    export = as_auditor.get(reverse("audit:export"))
    assert export.status_code == 200 and export.streaming
    assert export["Content-Type"].startswith("text/csv") and "attachment" in export["Content-Disposition"]
    rows = read_csv(export)
    assert rows[0][1:] == ["Actor", "Action", "Target type", "Target id", "Target", "Details"]
    assert len(rows) - 1 == AuditEntry.objects.count()


def test_an_administrator_reads_the_log_and_helpdesk_has_no_nav_link(as_admin, as_helpdesk):
    assert as_admin.get(reverse("audit:index")).status_code == 200
    body = as_helpdesk.get(reverse("dashboard:overview")).content.decode()
    assert 'href="/audit/"' not in body and 'href="/reports/' not in body


def test_the_fragment_is_the_table_only(as_auditor, sample):
    response = as_auditor.get(reverse("audit:index") + "?action=restore", headers=HX)
    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith('<div id="audit-list">') and "<nav" not in body
    assert "restore.files" in body and "point.lock" not in body


@pytest.mark.parametrize(
    "query, expected",
    [
        ("action=restore", {"restore.files", "restore.vm"}),
        ("action=group", {"protection.group_update"}),  # a dotted part's prefix
        ("action=vault", {"vault.settings"}),
        ("actor=bob", {"restore.vm"}),
        ("actor=command", {"point.lock"}),
        ("target=WEB-01", {"restore.files", "point.lock"}),
        ("action=restore&actor=alice", {"restore.files"}),
    ],
)
def test_filters_narrow_the_list(as_auditor, sample, query, expected):
    response = as_auditor.get(reverse("audit:index") + "?" + query)
    assert set(listed_actions(response)) == expected
    export = read_csv(as_auditor.get(reverse("audit:export") + "?" + query))
    assert {row[2] for row in export[1:]} == expected


def test_the_date_range_is_inclusive_in_local_days(as_auditor, sample):
    today = timezone.localdate()
    since, until = today - dt.timedelta(days=12), today - dt.timedelta(days=2)
    response = as_auditor.get(reverse("audit:index"), {"since": since.isoformat(), "until": until.isoformat()})
    assert set(listed_actions(response)) == {"restore.vm", "protection.group_update"}
    response = as_auditor.get(reverse("audit:index"), {"until": (today - dt.timedelta(days=30)).isoformat()})
    assert listed_actions(response) == ["point.lock"]
    response = as_auditor.get(reverse("audit:index"), {"since": today.isoformat(), "action": "restore"})
    assert listed_actions(response) == ["restore.files"]


def test_a_reversed_date_range_says_so(as_auditor, sample):
    today = timezone.localdate()
    response = as_auditor.get(reverse("audit:index"), {"since": today.isoformat(), "until": "2000-01-01"})
    assert response.status_code == 200 and "before its start" in response.content.decode()


def test_pages_hold_100_entries_and_page_through_all_of_them_once(as_auditor):
    AuditEntry.objects.bulk_create(
        [AuditEntry(actor_name="system", action="protection.vm_joined", target_label=f"vm-{n:03}") for n in range(250)]
    )
    seen: list[str] = []
    url = reverse("audit:index") + "?action=protection"
    sizes = []
    while url:
        response = as_auditor.get(url)
        rows = [row.target_label for row, _ in response.context["rows"]]
        sizes.append(len(rows))
        seen += rows
        older = response.context["older"]
        url = reverse("audit:index") + f"?action=protection&before={older}" if older else None
        if older:
            assert f"before={older}" in response.content.decode()
    assert sizes == [100, 100, 50]
    assert sorted(seen) == [f"vm-{n:03}" for n in range(250)]


def test_details_are_readable_and_escaped(as_auditor):
    entry("vault.settings", label="<b>Vault</b>", changes={"directory": ["/srv/a", "<script>alert(1)</script>"]})
    entry("protection.group_update", label="Prod", schedule=["daily 22:00", "daily 23:00"])
    body = as_auditor.get(reverse("audit:index")).content.decode()
    assert "<script>alert(1)</script>" not in body and "<b>Vault</b>" not in body
    assert "/srv/a → &lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "&lt;b&gt;Vault&lt;/b&gt;" in body
    assert "daily 22:00 → daily 23:00" in body


def test_the_export_guards_formulas_and_keeps_non_ascii_text(as_auditor):
    entry("restore.files", actor="alice", label='=HYPERLINK("http://evil","x")', paths=["C:/Zürich/数据.txt"])
    entry("restore.files", actor="alice", label="+1", paths=[])
    entry("restore.files", actor="alice", label="@SUM(A1)", paths=[])
    entry("restore.files", actor="alice", label="-2", paths=[])
    rows = read_csv(as_auditor.get(reverse("audit:export") + "?action=restore"))
    labels = {row[5] for row in rows[1:]}
    assert labels == {'\'=HYPERLINK("http://evil","x")', "'+1", "'@SUM(A1)", "'-2"}
    assert any("Zürich/数据.txt" in row[6] for row in rows[1:])


def test_the_export_streams_every_matching_row_not_one_page(as_auditor):
    AuditEntry.objects.bulk_create(
        [AuditEntry(actor_name="retention", action="point.prune", target_label=f"p{n}") for n in range(333)]
    )
    rows = read_csv(as_auditor.get(reverse("audit:export") + "?action=point"))
    assert len(rows) == 1 + 333
