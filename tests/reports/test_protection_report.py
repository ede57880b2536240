"""The protection report: every VM exactly once with its group, points, RPO and last backup; CSV and page."""

from __future__ import annotations

import csv
import datetime as dt
import io
import time

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEntry
from inventory.models import VirtualMachine
from jobs.models import JobRun
from protection.membership import refresh_membership
from protection.models import ProtectionGroup
from protection.scheduling import BACKUP_KIND
from reports.queries import protection_report
from tests.factories.protection import protect_folders, protect_vms
from tests.inventory.factories import create_test_tree, create_test_vcenter, create_test_vm
from vault.models import RecoveryPoint

pytestmark = pytest.mark.django_db
HYPERLINK = '=HYPERLINK("x")'
ZURICH = "Zürich-数据-01"
REPORT_URLS = [reverse("reports:protection"), reverse("reports:protection_csv"), reverse("reports:index")]


def point(vm, age: dt.timedelta, *, local=True, vault=False, damaged=False):
    when = timezone.now() - age
    return RecoveryPoint.objects.create(
        vm=vm,
        created=when,
        completed=when,
        consistency="crash",
        local=local,
        damaged=damaged,
        vault_status=RecoveryPoint.VaultStatus.REPLICATED if vault else RecoveryPoint.VaultStatus.NOT_REPLICATED,
    )


def backup_job(vm, status: str, age: dt.timedelta) -> JobRun:
    when = timezone.now() - age
    return JobRun.objects.create(
        kind=BACKUP_KIND,
        title=f"Backup of {vm.name}",
        target_type="inventory.virtualmachine",
        target_id=str(vm.pk),
        status=status,
        created=when,
        started=when,
        finished=when + dt.timedelta(minutes=5),
    )


@pytest.fixture
def lab():
    """Two vCenters; a protected group with a healthy VM and one in breach; an unprotected VM with a
    formula for a name, a do-not-protect VM with a non-ASCII name, a template, a removed VM that
    keeps a point, and a removed VM without points (not listed)."""
    folders = create_test_tree(create_test_vcenter("vc1"), ["Prod", "Prod/Web", "Test"])
    branch = create_test_tree(create_test_vcenter("vc2"), ["Branch"], dc_name="DC2")
    vms = {
        "web-01": create_test_vm(folders["Prod/Web"], "web-01"),
        "web-02": create_test_vm(folders["Prod/Web"], "web-02"),
        "formula": create_test_vm(folders["Test"], HYPERLINK),
        "zurich": create_test_vm(folders["Test"], ZURICH, do_not_protect=True),
        "template": create_test_vm(folders["Test"], "tmpl-linux", is_template=True),
        "other-web-01": create_test_vm(branch["Branch"], "web-01"),
        "old": create_test_vm(folders["Prod"], "old-01", removed_at=timezone.now()),
        "gone": create_test_vm(folders["Prod"], "gone-01", removed_at=timezone.now()),
    }
    group = protect_folders("Prod", [folders["Prod"]], schedule="daily 22:00")
    # The group and its members are three days old, so yesterday's slot is due for both.
    three_days_ago = timezone.now() - dt.timedelta(days=3)
    ProtectionGroup.objects.filter(pk=group.pk).update(created=three_days_ago)
    AuditEntry.objects.filter(action="protection.vm_joined").update(created=three_days_ago)
    VirtualMachine.objects.filter(pk=vms["old"].pk).update(protection_group=group)  # it was a member

    point(vms["web-01"], dt.timedelta(days=2), vault=True)
    point(vms["web-01"], dt.timedelta(minutes=10))
    point(vms["web-01"], dt.timedelta(minutes=1), damaged=True)
    point(vms["old"], dt.timedelta(days=20), local=False, vault=True)
    backup_job(vms["web-01"], JobRun.Status.FAILED, dt.timedelta(days=1))
    backup_job(vms["web-01"], JobRun.Status.SUCCEEDED, dt.timedelta(minutes=15))
    backup_job(vms["web-02"], JobRun.Status.FAILED, dt.timedelta(hours=2))
    for vm in vms.values():
        vm.refresh_from_db()
    return vms


def read_csv(response) -> list[dict[str, str]]:
    body = b"".join(response.streaming_content)
    assert body.startswith(b"\xef\xbb\xbf")
    reader = csv.reader(io.StringIO(body.decode("utf-8-sig")))
    header = [h.split(" (")[0] for h in next(reader)]
    return [dict(zip(header, row, strict=True)) for row in reader]


def local(when) -> str:
    return timezone.localtime(when).strftime("%Y-%m-%d %H:%M:%S")


def test_the_csv_lists_every_vm_exactly_once_with_its_group_points_and_rpo(as_auditor, lab):
    response = as_auditor.get(reverse("reports:protection_csv"))
    assert response.status_code == 200 and response.streaming
    assert "attachment" in response["Content-Disposition"]
    rows = read_csv(response)
    keys = [(r["vCenter"], r["VM"]) for r in rows]
    assert len(keys) == len(set(keys)) == 7
    by = {(r["vCenter"], r["VM"]): r for r in rows}
    assert ("vc1", "gone-01") not in by

    web01 = by[("vc1", "web-01")]
    points = {p.created: p for p in lab["web-01"].recovery_points.all()}
    good_local = max(t for t, p in points.items() if not p.damaged)
    in_vault = max(t for t, p in points.items() if p.vault_status == "replicated")
    assert web01 == {
        "VM": "web-01",
        "vCenter": "vc1",
        "Folder": "DC1/Prod/Web",
        "Protection group": "Prod",
        "Removed": "",
        "Newest local point": local(good_local),
        "Newest vault point": local(in_vault),
        "RPO": "ok",
        "Last backup job": "succeeded",
        "Last backup job time": web01["Last backup job time"],
        "Points": "3",
        "Last proven": "",  # never restore-tested (tests/restore_tests/test_results_are_shown.py)
        "Proof overdue": "",
    }
    assert web01["Last backup job time"] > local(timezone.now() - dt.timedelta(minutes=16))
    web02 = by[("vc1", "web-02")]
    assert (web02["Protection group"], web02["RPO"], web02["Last backup job"], web02["Points"]) == (
        "Prod", "breached", "failed", "0"
    )  # fmt: skip
    assert web02["Newest local point"] == web02["Newest vault point"] == ""
    assert by[("vc2", "web-01")]["Protection group"] == "unprotected" and by[("vc2", "web-01")]["RPO"] == ""
    assert by[("vc2", "web-01")]["Folder"] == "DC2/Branch"
    assert by[("vc1", "tmpl-linux")]["Protection group"] == "template"
    old = by[("vc1", "old-01")]
    assert (old["Removed"], old["RPO"], old["Points"], old["Newest local point"]) == ("removed", "removed", "1", "")
    assert old["Newest vault point"]


def test_the_csv_defuses_a_formula_name_and_keeps_non_ascii_names(as_admin, lab):
    body = b"".join(as_admin.get(reverse("reports:protection_csv")).streaming_content).decode("utf-8-sig")
    assert '"\'=HYPERLINK(""x"")"' in body  # quoted as text, not a formula
    assert "\n=" not in body and ",=" not in body
    rows = read_csv(as_admin.get(reverse("reports:protection_csv")))
    by = {r["VM"]: r for r in rows}
    assert "'" + HYPERLINK in by and by["'" + HYPERLINK]["Protection group"] == "unprotected"
    assert by[ZURICH]["Protection group"] == "do not protect"


def test_the_page_shows_totals_and_every_vm_escaped(as_auditor, lab):
    response = as_auditor.get(reverse("reports:protection"))
    assert response.status_code == 200
    totals = response.context["totals"]
    assert (totals.protected, totals.unprotected, totals.breached, totals.not_off_site) == (2, 1 + 1, 1, 1)
    assert (totals.do_not_protect, totals.templates, totals.removed) == (1, 1, 1)
    body = response.content.decode()
    assert "=HYPERLINK(&quot;x&quot;)" in body and ZURICH in body and "gone-01" not in body
    assert "Generated" in body and "reports/print.css" in body
    assert body.count("<tr") == 1 + 7


def test_the_print_stylesheet_hides_navigation_and_repeats_table_headers():
    from pathlib import Path

    from django.contrib.staticfiles import finders

    css = Path(finders.find("reports/print.css")).read_text()
    assert "@media print" in css and ".topbar" in css and "table-header-group" in css


@pytest.mark.parametrize("url", REPORT_URLS)
def test_helpdesk_and_users_without_a_role_are_refused(as_helpdesk, as_norole, url):
    for client in (as_helpdesk, as_norole):
        assert client.get(url).status_code == 403
        assert client.get(url, headers={"HX-Request": "true"}).status_code == 403


def test_administrators_and_auditors_see_the_reports_link(as_admin, as_auditor):
    for client in (as_admin, as_auditor):
        assert 'href="/reports/protection/"' in client.get(reverse("dashboard:overview")).content.decode()


def test_the_number_of_queries_does_not_grow_with_the_inventory(lab):
    with CaptureQueriesContext(connection) as small:
        protection_report()
    folder = lab["web-01"].folder
    for n in range(30):
        vm = create_test_vm(folder, f"extra-{n}", disks=0)
        point(vm, dt.timedelta(hours=1), vault=n % 2 == 0)
        backup_job(vm, JobRun.Status.SUCCEEDED, dt.timedelta(hours=1))
    refresh_membership()  # they join the group: RPO states for them too
    with CaptureQueriesContext(connection) as large:
        report = protection_report()
    assert len(report.rows) == 7 + 30
    assert len(large.captured_queries) == len(small.captured_queries) <= 6


def test_ten_thousand_vms_take_a_few_seconds(lab, as_auditor):
    folder = lab["web-01"].folder
    group = lab["web-01"].protection_group
    VirtualMachine.objects.bulk_create(
        [
            VirtualMachine(
                vcenter_id=folder.vcenter_id,
                instance_uuid=f"bulk-{n}",
                moref=f"vm-bulk-{n}",
                name=f"bulk-{n:05}",
                datacenter_id=folder.datacenter_id,
                folder=folder,
                path=f"{folder.path}/bulk-{n:05}",
                protection_group=group if n % 2 else None,
            )
            for n in range(10_000)
        ],
        batch_size=2000,
    )
    started = time.monotonic()
    report = protection_report()
    assert len(report.rows) == 10_007
    assert time.monotonic() - started < 10
    started = time.monotonic()
    response = as_auditor.get(reverse("reports:protection"))
    assert response.status_code == 200 and response.context["totals"].protected == 2 + 5_000
    assert time.monotonic() - started < 20


def test_the_command_prints_a_table_or_csv(lab):
    out = io.StringIO()
    call_command("report", "protection", stdout=out)
    text = out.getvalue()
    assert "2 protected" in text and "1 RPO breached" in text and "web-02" in text and ZURICH in text
    out = io.StringIO()
    call_command("report", "protection", "--csv", stdout=out)
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert rows[0][0] == "VM" and len(rows) == 1 + 7
    assert [r[0] for r in rows if "HYPERLINK" in r[0]] == ["'" + HYPERLINK]


def test_the_overview_rpo_link_shows_only_breached_vms(as_admin):
    folders = create_test_tree(create_test_vcenter("vc-rpo"), ["Prod"])
    vm = create_test_vm(folders["Prod"], "late-01")
    create_test_vm(folders["Prod"], "fine-01")
    protect_vms("Late", [vm])
    assert 'href="/reports/protection/?rpo=breached"' in as_admin.get("/").content.decode()
    body = as_admin.get("/reports/protection/", {"rpo": "breached"}).content.decode()
    assert "Showing only the" in body and "fine-01" not in body
