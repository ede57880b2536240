"""The Alerts pages: who may see and acknowledge, and what they show."""

from __future__ import annotations

import pytest
from django.utils import timezone

from alerts.models import Alert
from audit.models import AuditEntry

pytestmark = pytest.mark.django_db


def make_alert(kind: str = "failed_backup", key: str = "1", **fields) -> Alert:
    now = timezone.now()
    defaults = {
        "severity": "critical",
        "title": f"Backup of web-{key} failed",
        "detail": "The datastore is full.",
        "opened_at": now,
        "last_seen_at": now,
    }
    return Alert.objects.create(kind=kind, key=key, **{**defaults, **fields})


def test_administrators_and_auditors_see_alerts_open_first_with_status_as_text(as_admin, as_auditor):
    resolved = make_alert(key="1", resolved_at=timezone.now())
    warning = make_alert("store_nearly_full", "local-store", severity="warning", title="The local store is nearly full")
    critical = make_alert(key="2", target_type="vault", target_label="Vault")
    for client in (as_admin, as_auditor):
        body = client.get("/alerts/").content.decode()
        order = [body.index(f'id="alert-{a.pk}"') for a in (critical, warning, resolved)]
        assert order == sorted(order)
        assert ">Open</span>" in body and ">Resolved</span>" in body and ">Warning</span>" in body
        assert '<label for="alert-status">Status</label>' in body and '<label for="alert-kind">Kind</label>' in body
        assert '<a href="/vault/">Vault</a>' in body
    assert "Acknowledge" in as_admin.get("/alerts/").content.decode()
    assert ">Acknowledge</button>" not in as_auditor.get("/alerts/").content.decode()


def test_the_list_filters_by_status_and_kind(as_admin, admin):
    open_one = make_alert(key="1")
    acked = make_alert(key="2", acknowledged_by=admin, acknowledged_at=timezone.now())
    resolved = make_alert(key="3", resolved_at=timezone.now())
    store = make_alert("store_nearly_full", "local-store", severity="warning")

    def shown(query: str) -> set[int]:
        return {a.pk for a in as_admin.get(f"/alerts/?{query}").context["page"].object_list}

    assert shown("status=open") == {open_one.pk, store.pk}
    assert shown("status=acknowledged") == {acked.pk}
    assert shown("status=resolved") == {resolved.pk}
    assert shown("kind=store_nearly_full") == {store.pk}
    assert shown("status=open&kind=failed_backup") == {open_one.pk}


def test_the_navigation_counts_open_unacknowledged_alerts(as_admin, as_auditor, as_helpdesk, admin):
    make_alert(key="1")
    make_alert(key="2")
    make_alert(key="3", acknowledged_by=admin, acknowledged_at=timezone.now())
    make_alert(key="4", resolved_at=timezone.now())
    assert 'href="/alerts/" aria-current="page">Alerts (2)</a>' in as_auditor.get("/alerts/").content.decode()
    assert "Alerts (2)" in as_admin.get("/jobs/").content.decode()
    assert 'href="/alerts/"' not in as_helpdesk.get("/jobs/").content.decode()


def test_an_administrator_acknowledges_an_alert_and_it_is_audited(as_admin, admin):
    alert = make_alert()
    response = as_admin.post(f"/alerts/{alert.pk}/acknowledge/")
    assert response.status_code == 302 and response["Location"] == "/alerts/"
    alert.refresh_from_db()
    assert alert.acknowledged_by == admin and alert.acknowledged_at is not None and alert.is_open
    entry = AuditEntry.objects.get(action="alert.acknowledge")
    assert entry.actor == admin and entry.target_id == str(alert.pk) and entry.details["kind"] == "failed_backup"

    # Twice is once.
    as_admin.post(f"/alerts/{alert.pk}/acknowledge/")
    assert AuditEntry.objects.filter(action="alert.acknowledge").count() == 1


def test_acknowledging_with_htmx_returns_the_row(as_admin):
    alert = make_alert()
    response = as_admin.post(f"/alerts/{alert.pk}/acknowledge/", HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert response.status_code == 200 and body.lstrip().startswith(f'<tr id="alert-{alert.pk}"')
    assert ">Acknowledged</span>" in body and "by alice" in body and ">Acknowledge</button>" not in body


def test_helpdesk_may_neither_see_nor_acknowledge_alerts(as_helpdesk):
    alert = make_alert()
    assert as_helpdesk.get("/alerts/").status_code == 403
    assert as_helpdesk.get(f"/alerts/{alert.pk}/").status_code == 403
    assert as_helpdesk.get(f"/alerts/{alert.pk}/row/").status_code == 403
    assert as_helpdesk.get(f"/alerts/{alert.pk}/row/", HTTP_HX_REQUEST="true").status_code == 403
    assert as_helpdesk.post(f"/alerts/{alert.pk}/acknowledge/").status_code == 403
    assert as_helpdesk.post(f"/alerts/{alert.pk}/acknowledge/", HTTP_HX_REQUEST="true").status_code == 403
    alert.refresh_from_db()
    assert alert.acknowledged_at is None and not AuditEntry.objects.filter(action="alert.acknowledge").exists()


def test_auditors_read_but_may_not_acknowledge(as_auditor, as_norole):
    alert = make_alert()
    assert as_auditor.get(f"/alerts/{alert.pk}/").status_code == 200
    assert as_auditor.get(f"/alerts/{alert.pk}/row/", HTTP_HX_REQUEST="true").status_code == 200
    assert as_auditor.post(f"/alerts/{alert.pk}/acknowledge/").status_code == 403
    assert as_norole.get("/alerts/").status_code == 403
    alert.refresh_from_db()
    assert alert.acknowledged_at is None


def test_the_detail_page_links_to_the_target_and_the_job(as_admin):
    import uuid

    job = uuid.uuid4()
    alert = make_alert(target_type="inventory.virtualmachine", target_id="7", target_label="web-7", job_id=job)
    body = as_admin.get(f"/alerts/{alert.pk}/").content.decode()
    assert '<a href="/inventory/vms/7/">web-7</a>' in body and f'href="/jobs/{job}/"' in body
    assert f'name="next" value="/alerts/{alert.pk}/"' in body
    response = as_admin.post(f"/alerts/{alert.pk}/acknowledge/", {"next": f"/alerts/{alert.pk}/"})
    assert response["Location"] == f"/alerts/{alert.pk}/"
    alert.acknowledged_at = None
    alert.save()
    response = as_admin.post(f"/alerts/{alert.pk}/acknowledge/", {"next": "https://evil.example/"})
    assert response["Location"] == "/alerts/"
