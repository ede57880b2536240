"""File-level restore through the pages: real NTFS (GPT) and ext4 (MBR) disks in recovery points,
browsing, downloads, zips, search, other versions, grants and the audit trail."""

from __future__ import annotations

import hashlib
import io
import zipfile

import pytest
from django.utils import timezone

from audit.models import AuditEntry
from recovery.catalog.jobs import catalogue_vm
from recovery.models import Restore, RestoreGrant
from tests.factories.protection import protect_vms
from tests.factories.recovery import BIG, LINUX, WINDOWS, point_with_disks
from tests.inventory.factories import create_test_tree, create_test_vcenter, create_test_vm
from tools import diskimages
from vault.models import RecoveryPoint

pytestmark = pytest.mark.django_db


@pytest.fixture
def lab(settings, tmp_path):
    settings.BACKUP_STORE_DIR = tmp_path / "store"
    vc = create_test_vcenter()
    folders = create_test_tree(vc, ["Prod", "Finance"])
    win = create_test_vm(folders["Prod"], "win-01", disks=2)
    lnx = create_test_vm(folders["Finance"], "lnx-01")
    prod = protect_vms("Prod", [win])
    finance = protect_vms("Finance", [lnx])
    ntfs = diskimages.build_ntfs_disk(WINDOWS, size_mib=48)
    ext4 = diskimages.build_ext4_disk(LINUX, size_mib=40)
    win_point = point_with_disks(win, prod, {2000: ntfs, 2001: ext4}, timezone.now())
    lnx_point = point_with_disks(lnx, finance, {2000: ext4}, timezone.now())
    return {
        "win": win,
        "lnx": lnx,
        "prod": prod,
        "finance": finance,
        "win_point": win_point,
        "lnx_point": lnx_point,
        "tmp": tmp_path,
        "ext4": ext4,
    }


@pytest.fixture
def granted(lab, helpdesk):
    RestoreGrant.objects.create(user=helpdesk, group=lab["prod"])
    return lab


def body(response) -> str:
    return b"".join(response.streaming_content).decode() if response.streaming else response.content.decode()


def test_volumes_of_both_disks_are_listed_with_file_systems(granted, as_helpdesk):
    page = body(as_helpdesk.get(f"/recovery/points/{granted['win_point'].pk}/"))
    assert "ntfs" in page and "ext4" in page and "browsable" in page


def test_folders_list_with_non_ascii_names_and_files_download_byte_identical(granted, as_helpdesk):
    point = granted["win_point"]
    volume = _ntfs_volume(as_helpdesk, point)
    listing = body(as_helpdesk.get(f"/recovery/points/{point.pk}/2000/{volume}/?path=/Users/alice/Documents"))
    for name in ("Überweisung Zoë.txt", "議事録.txt", "big.bin", "empty.txt", "Reports"):
        assert name in listing
    for path, expected in [
        ("/Users/alice/Documents/big.bin", BIG),
        ("/Users/alice/Documents/empty.txt", b""),
        ("/Users/alice/Documents/Überweisung Zoë.txt", "Betrag: 42 €\r\n".encode()),
    ]:
        response = as_helpdesk.get(f"/recovery/points/{point.pk}/2000/{volume}/file/", {"path": path})
        assert response.status_code == 200 and response["Content-Disposition"].startswith("attachment;")
        data = b"".join(response.streaming_content)
        assert hashlib.sha256(data).digest() == hashlib.sha256(expected).digest()
    restores = Restore.objects.filter(kind="files", requested_by__username="bob", status="completed")
    assert sorted(r.bytes_restored for r in restores) == sorted([len(BIG), 0, len("Betrag: 42 €\r\n".encode())])
    assert AuditEntry.objects.filter(action="restore.files", actor__username="bob").count() == 3


def test_ext4_on_mbr_downloads_byte_identical(granted, as_helpdesk):
    point = granted["win_point"]
    response = as_helpdesk.get(f"/recovery/points/{point.pk}/2001/1/file/", {"path": "/home/bob/notes.txt"})
    assert b"".join(response.streaming_content) == b"TODO\n"


def _ntfs_volume(client, point) -> int:
    page = body(client.get(f"/recovery/points/{point.pk}/"))
    for volume in range(1, 6):
        if f"/recovery/points/{point.pk}/2000/{volume}/" in page:
            return volume
    raise AssertionError("no browsable NTFS volume linked")


def test_a_zip_of_a_multi_folder_selection_unpacks_to_exactly_that_tree(granted, as_helpdesk):
    point = granted["win_point"]
    volume = _ntfs_volume(as_helpdesk, point)
    for path in ("/Users/alice/Documents/Reports", "/Users/alice/Desktop/todo.txt"):
        as_helpdesk.post(f"/recovery/points/{point.pk}/select/", {"item": f"2000:{volume}:{path}"})
    response = as_helpdesk.post(f"/recovery/points/{point.pk}/zip/")
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    files = {n: archive.read(n) for n in archive.namelist() if not n.endswith("/")}
    assert files == {
        "Users/alice/Documents/Reports/q1.csv": b"a,b\r\n1,2\r\n",
        "Users/alice/Documents/Reports/Deep/q2.csv": b"c\r\n",
        "Users/alice/Desktop/todo.txt": b"restore tests\r\n",
    }
    restore = Restore.objects.latest("created")
    assert restore.status == "completed" and restore.bytes_restored == sum(len(v) for v in files.values())


def test_search_by_name_finds_files_in_every_volume(granted, as_helpdesk):
    catalogue_vm(None, granted["win"].pk)  # search reads the file catalog a backup's job writes
    page = body(as_helpdesk.get(f"/recovery/points/{granted['win_point'].pk}/search/", {"q": "*.csv"}))
    assert "q1.csv" in page and "q2.csv" in page and "3 matches" not in page
    assert "2 matches" in page


def test_a_file_deleted_later_is_found_in_the_earlier_point_through_other_versions(granted, as_helpdesk, lab):
    later_tree = {"etc": {"hostname": "web01\n"}, "home": {"bob": {"notes.txt": "TODO, done\n"}}}
    later = diskimages.build_ext4_disk(later_tree, size_mib=40)
    earlier = lab["win_point"]
    RecoveryPoint.objects.filter(pk=earlier.pk).update(created=timezone.now() - timezone.timedelta(days=1))
    newer = point_with_disks(lab["win"], lab["prod"], {2001: later}, timezone.now())
    catalogue_vm(None, lab["win"].pk)  # other versions are read from the file catalog

    page = body(as_helpdesk.get(f"/recovery/points/{newer.pk}/2001/1/versions/", {"path": "/home/bob/gone.txt"}))

    assert "not in this point" in page
    assert f"/recovery/points/{earlier.pk}/2001/1/file/?path=/home/bob/gone.txt" in page.replace("%2F", "/")


def test_a_corrupted_volume_shows_its_reason_and_the_page_still_works(granted, as_helpdesk, tmp_path):
    bad = tmp_path / "bad.img"
    data = bytearray(granted["ext4"].read_bytes())
    data[1024 * 1024 : 1024 * 1024 + 8192] = b"\xa5" * 8192  # the partition's first sectors (superblock)
    bad.write_bytes(bytes(data))
    point = point_with_disks(granted["win"], granted["prod"], {2000: bad}, timezone.now())
    page = body(as_helpdesk.get(f"/recovery/points/{point.pk}/"))
    assert "not browsable" in page and "unknown file system" in page


def test_helpdesk_sees_only_granted_vms_even_through_partial_urls(granted, as_helpdesk):
    other = granted["lnx_point"]
    assert "lnx-01" not in body(as_helpdesk.get("/recovery/")) and "win-01" in body(as_helpdesk.get("/recovery/"))
    for url in (
        f"/recovery/vms/{granted['lnx'].pk}/",
        f"/recovery/points/{other.pk}/",
        f"/recovery/points/{other.pk}/2000/1/?path=/home",
        f"/recovery/points/{other.pk}/2000/1/file/?path=/home/bob/notes.txt",
        f"/recovery/points/{other.pk}/2000/1/versions/?path=/home/bob/notes.txt",
        f"/recovery/points/{other.pk}/search/?q=notes",
    ):
        assert as_helpdesk.get(url, headers={"HX-Request": "true"}).status_code in (403, 404), url
    # 404: a point outside the grants is one helpdesk may not know exists.
    assert as_helpdesk.post(f"/recovery/points/{other.pk}/zip/", {"item": "2000:1:/home"}).status_code == 404
    assert not Restore.objects.exists()


def test_a_folder_grant_covers_vms_below_it(lab, helpdesk, as_helpdesk):
    RestoreGrant.objects.create(user=helpdesk, folder=lab["lnx"].folder)
    page = body(as_helpdesk.get("/recovery/"))
    assert "lnx-01" in page and "win-01" not in page


def test_helpdesk_without_grants_is_told_so(lab, as_helpdesk):
    assert "No VMs granted to you yet" in body(as_helpdesk.get("/recovery/"))


def test_helpdesk_cannot_start_a_whole_vm_restore(granted, as_helpdesk):
    point = granted["win_point"]
    assert as_helpdesk.get(f"/recovery/points/{point.pk}/restore-vm/").status_code == 403
    assert as_helpdesk.post(f"/recovery/points/{point.pk}/restore-vm/", {"mode": "overwrite"}).status_code == 403
    assert "Restore the whole VM" not in body(as_helpdesk.get(f"/recovery/points/{point.pk}/"))


def test_hostile_paths_are_refused(granted, as_helpdesk):
    point = granted["win_point"]
    for path in ("/../../etc/passwd", "/Users/\x00", "../x"):
        assert as_helpdesk.get(f"/recovery/points/{point.pk}/2001/1/file/", {"path": path}).status_code == 404
    response = as_helpdesk.post(f"/recovery/points/{point.pk}/select/", {"item": "2001:1:/home/../.."})
    assert response.status_code == 400


def test_auditors_see_points_but_cannot_browse_or_download(granted, as_auditor):
    point = granted["win_point"]
    assert as_auditor.get(f"/recovery/vms/{granted['win'].pk}/").status_code == 200
    assert as_auditor.get(f"/recovery/points/{point.pk}/").status_code == 403
    assert as_auditor.get(f"/recovery/points/{point.pk}/2001/1/file/?path=/etc/hostname").status_code == 403


def test_an_administrator_grants_and_revokes_a_group_and_it_is_audited(lab, helpdesk, as_admin, as_helpdesk):
    assert as_helpdesk.get("/recovery/grants/").status_code == 403
    as_admin.post("/recovery/grants/", {"user": helpdesk.pk, "group": lab["finance"].pk})
    grant = RestoreGrant.objects.get(user=helpdesk)
    assert "lnx-01" in body(as_helpdesk.get("/recovery/"))
    as_admin.post(f"/recovery/grants/{grant.pk}/revoke/")
    assert "lnx-01" not in body(as_helpdesk.get("/recovery/"))
    assert [e.action for e in AuditEntry.objects.filter(action__startswith="grant.").order_by("pk")] == [
        "grant.add",
        "grant.remove",
    ]


def test_ls_and_restore_files_commands(granted, tmp_path):
    from django.core.management import CommandError, call_command

    out = io.StringIO()
    call_command("ls", "win-01", stdout=out)
    assert "2000:" in out.getvalue() and "2001:1:" in out.getvalue()
    out = io.StringIO()
    call_command("ls", "win-01", "2001:1:/home/bob", stdout=out)
    assert "notes.txt" in out.getvalue() and "gone.txt" in out.getvalue()
    target = tmp_path / "out"
    target.mkdir()

    call_command("restore-files", "win-01", "--path", "2001:1:/home/bob", "--to", str(target), stdout=io.StringIO())

    assert (target / "home/bob/notes.txt").read_bytes() == b"TODO\n"
    with pytest.raises(CommandError, match="exist already"):
        call_command("restore-files", "win-01", "--path", "2001:1:/home/bob", "--to", str(target))
    assert (target / "home/bob/notes.txt").read_bytes() == b"TODO\n"
    with pytest.raises(CommandError, match="not a path"):
        call_command("ls", "win-01", "2001:1:/home/../..")
    assert AuditEntry.objects.filter(action="restore.files", actor_name="command line").count() == 1
