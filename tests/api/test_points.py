"""Recovery points through the API: visible per restore grants (others' points are 404, also by id),
where each point is, volumes and folders of real NTFS and ext4 disks, byte-identical downloads
recorded like page downloads, and whole-VM restores validated by the page's form."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AuditEntry
from inventory.models import Datastore, ResourcePool
from jobs.models import JobRun
from recovery.models import Restore, RestoreGrant
from tests.factories.recovery import BIG

pytestmark = pytest.mark.django_db


def ids(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [p["id"] for p in response.json()["results"]]


def test_restore_operators_see_only_the_points_of_granted_vms_also_by_id(api_helpdesk, rows):
    old, new, dev = (str(rows[k].pk) for k in ("old", "new", "dev"))
    assert ids(api_helpdesk.get("/api/v1/points/")) == [new, old]
    for suffix in ("", "volumes/", "files/?disk=2000&volume=1", "download/?disk=2000&volume=1&path=/a"):
        response = api_helpdesk.get(f"/api/v1/points/{dev}/{suffix}")
        assert response.status_code == 404, suffix
    assert ids(api_helpdesk.get("/api/v1/points/", {"vm": rows["dev"].vm_id})) == []


def test_a_restore_operator_without_grants_sees_no_points(api_helpdesk, rows):
    RestoreGrant.objects.all().delete()
    assert ids(api_helpdesk.get("/api/v1/points/")) == []
    assert api_helpdesk.get(f"/api/v1/points/{rows['new'].pk}/").status_code == 404


def test_auditors_and_administrators_see_every_point(api_auditor, api_admin, rows):
    expected = [str(rows[k].pk) for k in ("new", "dev", "old")]
    assert ids(api_auditor.get("/api/v1/points/")) == expected
    assert ids(api_admin.get("/api/v1/points/")) == expected


def test_points_filter_by_vm_and_time(api_admin, rows):
    web = rows["new"].vm_id
    assert ids(api_admin.get("/api/v1/points/", {"vm": web})) == [str(rows["new"].pk), str(rows["old"].pk)]
    since = (timezone.now() - timedelta(days=1, hours=1)).isoformat()
    until = (timezone.now() - timedelta(hours=2)).isoformat()
    assert ids(api_admin.get("/api/v1/points/", {"since": since})) == [str(rows["new"].pk), str(rows["dev"].pk)]
    assert ids(api_admin.get("/api/v1/points/", {"since": since, "until": until})) == [str(rows["dev"].pk)]
    response = api_admin.get("/api/v1/points/", {"since": "yesterday"})
    assert response.status_code == 400 and "since" in response.json()


def test_a_point_says_where_it_is_and_lists_its_disks(api_auditor, rows):
    body = api_auditor.get(f"/api/v1/points/{rows['new'].pk}/").json()
    assert body["vm"]["name"] == "web-01" and body["group"]["name"] == "Prod"
    assert body["local"] is True and body["vault_status"] == "replicated" and body["vault_at"]
    assert body["locked"] is True and body["locked_until"] and body["damaged"] is False
    assert [(d["key"], d["read_path"], d["read_reason"]) for d in body["disks"]] == [(2000, "full", "no CBT")]
    dev = api_auditor.get(f"/api/v1/points/{rows['dev'].pk}/").json()
    assert dev["damaged"] is True and dev["local"] is False and dev["locked"] is False
    old = api_auditor.get(f"/api/v1/points/{rows['old'].pk}/").json()
    assert old["verified_at"] and old["vault_status"] == "none"


def test_auditors_may_list_points_but_not_browse_or_download(api_auditor, rows):
    point = rows["new"].pk
    assert api_auditor.get(f"/api/v1/points/{point}/volumes/").status_code == 403
    assert api_auditor.get(f"/api/v1/points/{point}/files/", {"disk": 2000, "volume": 1}).status_code == 403
    response = api_auditor.get(f"/api/v1/points/{point}/download/", {"disk": 2000, "volume": 1, "path": "/a"})
    assert response.status_code == 403 and not Restore.objects.exists()


def ntfs_volume(client, point) -> int:
    response = client.get(f"/api/v1/points/{point.pk}/volumes/")
    assert response.status_code == 200, response.content
    by_disk = {d["disk"]: d for d in response.json()}
    assert by_disk[2000]["scheme"] == "gpt" and by_disk[2001]["scheme"] == "mbr"
    assert [v["fs_type"] for v in by_disk[2001]["volumes"]] == ["ext4"]
    [ntfs] = [v for v in by_disk[2000]["volumes"] if v["fs_type"] == "ntfs"]
    assert ntfs["browsable"] and ntfs["reason"] == ""
    return ntfs["index"]


def test_a_folder_is_listed_with_names_sizes_times_and_owners(api_helpdesk, disks):
    volume = ntfs_volume(api_helpdesk, disks)
    response = api_helpdesk.get(
        f"/api/v1/points/{disks.pk}/files/", {"disk": 2000, "volume": volume, "path": "/Users/alice/Documents"}
    )
    assert response.status_code == 200, response.content
    entries = {e["name"]: e for e in response.json()["results"]}
    assert list(entries)[0] == "Reports"  # folders first
    assert set(entries) == {"Reports", "big.bin", "empty.txt", "Überweisung Zoë.txt", "議事録.txt"}
    assert entries["Reports"]["is_dir"] and not entries["big.bin"]["is_dir"]
    assert entries["big.bin"]["size"] == len(BIG) and entries["big.bin"]["path"] == "/Users/alice/Documents/big.bin"
    assert entries["big.bin"]["modified"] and entries["big.bin"]["owner"].startswith("S-1-")
    ext = api_helpdesk.get(f"/api/v1/points/{disks.pk}/files/", {"disk": 2001, "volume": 1, "path": "/home/bob"})
    assert [(e["name"], e["size"], e["owner"]) for e in ext.json()["results"]] == [
        ("gone.txt", 4, "uid 0"),
        ("notes.txt", 5, "uid 0"),
    ]


def test_a_download_is_byte_identical_and_recorded_like_a_page_download(api_helpdesk, helpdesk, disks):
    volume = ntfs_volume(api_helpdesk, disks)
    url = f"/api/v1/points/{disks.pk}/download/"
    for path, expected in [
        ("/Users/alice/Documents/big.bin", BIG),
        ("/Users/alice/Documents/Überweisung Zoë.txt", "Betrag: 42 €\r\n".encode()),
    ]:
        # A script may ask for bytes explicitly; errors would still come back as JSON.
        response = api_helpdesk.get(url, {"disk": 2000, "volume": volume, "path": path}, HTTP_ACCEPT="*/*")
        assert response.status_code == 200 and response["Content-Disposition"].startswith("attachment;")
        assert int(response["Content-Length"]) == len(expected)
        data = b"".join(response.streaming_content)
        assert hashlib.sha256(data).hexdigest() == hashlib.sha256(expected).hexdigest()
    response = api_helpdesk.get(
        url, {"disk": 2001, "volume": 1, "path": "/home/bob/notes.txt"}, HTTP_ACCEPT="application/octet-stream"
    )
    assert b"".join(response.streaming_content) == b"TODO\n"
    restores = Restore.objects.filter(kind="files", requested_by=helpdesk, status="completed")
    assert sorted(r.bytes_restored for r in restores) == sorted([len(BIG), len("Betrag: 42 €\r\n".encode()), 5])
    assert "2000:" + str(volume) + ":/Users/alice/Documents/big.bin" in [p for r in restores for p in r.paths]
    audit = AuditEntry.objects.filter(action="restore.files", actor=helpdesk)
    assert audit.count() == 3 and {e.target_label for e in audit} == {"web-01"}


def test_bad_paths_and_missing_files_are_clear_errors_and_nothing_is_recorded(api_helpdesk, disks):
    volume = ntfs_volume(api_helpdesk, disks)
    files, download = f"/api/v1/points/{disks.pk}/files/", f"/api/v1/points/{disks.pk}/download/"
    cases = [
        (files, {"disk": 2000, "volume": volume, "path": "/Users/../.."}, 400, "path"),
        (files, {"disk": 2000, "volume": volume, "path": "/Users/nobody"}, 404, "detail"),
        (files, {"disk": 2000, "volume": volume, "path": "/Users/alice/Desktop/todo.txt"}, 400, "path"),
        (files, {"disk": 2999, "volume": 1}, 404, "detail"),
        (files, {"disk": 2000, "volume": 99}, 404, "detail"),
        (files, {"disk": 2000}, 400, "volume"),
        (download, {"disk": 2000, "volume": volume}, 400, "path"),
        (download, {"disk": 2000, "volume": volume, "path": "/Users/alice"}, 400, "path"),
        (download, {"disk": 2000, "volume": volume, "path": "/Users/alice/nothing.txt"}, 404, "detail"),
    ]
    for url, query, status, key in cases:
        response = api_helpdesk.get(url, query)
        assert response.status_code == status and key in response.json(), (query, response.content)
    assert not Restore.objects.exists() and not AuditEntry.objects.filter(action="restore.files").exists()


@pytest.fixture
def placement(inventory):
    """A resource pool and a datastore in web-01's datacenter, for restores as a new VM."""
    dc_id = inventory["vms"]["web-01"].datacenter_id
    vc = inventory["vc"]
    pool = ResourcePool.objects.create(vcenter=vc, moref="resgroup-1", name="Resources", datacenter_id=dc_id)
    datastore = Datastore.objects.create(vcenter=vc, moref="datastore-1", name="ds1", datacenter_id=dc_id)
    return {"pool": pool, "datastore": datastore, "folder": inventory["folders"]["Prod"]}


def post_restore(client, point, body):
    return client.post(f"/api/v1/points/{point.pk}/restore-vm/", body, content_type="application/json")


def test_restore_vm_errors_come_back_as_400_with_the_forms_field_errors(api_admin, rows, placement):
    point = rows["new"]
    response = post_restore(api_admin, point, {"mode": "new"})
    assert response.status_code == 400
    assert set(response.json()) == {"name", "folder", "pool", "datastore"}
    assert response.json()["folder"] == ["Required for a new VM."]
    response = post_restore(api_admin, point, {"mode": "new", "name": "web-02", "folder": 999999, "pool": "x"})
    errors = response.json()
    assert "exists already" in errors["name"][0] and "folder" in errors and "pool" in errors
    response = post_restore(api_admin, point, {"mode": "overwrite", "confirm": "web-1"})
    assert response.json() == {"confirm": ["Type web-01 exactly to overwrite it."]}
    assert post_restore(api_admin, point, {"mode": "sideways"}).json()["mode"][0].startswith("Select a valid")
    assert post_restore(api_admin, point, ["overwrite"]).status_code == 400
    assert not JobRun.objects.exists() and not Restore.objects.exists()


def test_restore_vm_queues_the_job_and_records_the_restore(api_admin, admin, rows, placement):
    point = rows["new"]
    body = {
        "mode": "new",
        "name": "web-01-restored",
        "folder": placement["folder"].pk,
        "pool": placement["pool"].pk,
        "datastore": placement["datastore"].pk,
    }
    response = post_restore(api_admin, point, body)
    assert response.status_code == 202, response.content
    job = response.json()["job"]
    run = JobRun.objects.get(pk=job["id"])
    assert run.kind == "recovery.restore_vm" and run.created_by == admin and job["status"] == "queued"
    assert run.params["target"] == {
        "mode": "new",
        "name": "web-01-restored",
        "folder_id": placement["folder"].pk,
        "pool_id": placement["pool"].pk,
        "datastore_id": placement["datastore"].pk,
        "host_id": None,
    }
    restore = Restore.objects.get(kind="vm")
    assert restore.job == run and restore.requested_by == admin
    assert AuditEntry.objects.filter(action="restore.vm", actor=admin).count() == 1


def test_only_those_who_may_restore_vms_can(api_helpdesk, api_auditor, rows, placement):
    for client in (api_helpdesk, api_auditor):
        assert post_restore(client, rows["new"], {"mode": "overwrite", "confirm": "web-01"}).status_code == 403
    assert not JobRun.objects.exists()
