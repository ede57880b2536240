"""Nothing is lost silently when the disk itself is damaged: a folder that cannot be listed, or a
selection that cannot be read to its end, is named in RESTORE-REPORT.txt and on the Restore row."""

from __future__ import annotations

import io
import shutil
import zipfile

import pytest
from django.utils import timezone

from recovery.models import Restore, RestoreGrant
from recovery.restore_plan import REPORT_NAME
from recovery.zipstream import ZipItem, stream_zip
from tests.factories.protection import protect_vms
from tests.factories.recovery import point_with_disks
from tests.inventory.factories import create_test_tree, create_test_vcenter, create_test_vm
from tests.recovery.disk_images import PART_START, open_image, splice

pytestmark = pytest.mark.django_db


def test_a_folder_that_cannot_be_listed_is_named_in_the_report_and_the_rest_is_zipped(
    ntfs_image, tmp_path, settings, helpdesk, as_helpdesk
):
    settings.BACKUP_STORE_DIR = tmp_path / "store"
    disk = tmp_path / "disk.img"
    shutil.copyfile(ntfs_image, disk)
    fs = open_image(disk).filesystem(1)
    record = fs._ntfs.mft.get("Users/alice/Documents")  # wreck the folder's index buffer
    [(lcn, _count)] = record.index("$I30")._index_stream.runlist
    splice(b"\xff" * 4096, disk, PART_START + lcn * fs._ntfs.cluster_size)
    vm = create_test_vm(create_test_tree(create_test_vcenter(), ["Office"])["Office"], "desk-01")
    group = protect_vms("Office", [vm])
    RestoreGrant.objects.create(user=helpdesk, group=group)
    point = point_with_disks(vm, group, {2000: disk}, timezone.now())

    response = as_helpdesk.post(f"/recovery/points/{point.pk}/zip/", {"item": ["2000:1:/Users/alice"]})

    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    report = archive.read(REPORT_NAME).decode()
    assert "/Users/alice/Documents  folder cannot be read, its files are missing: " in report
    assert any(name.startswith("Users/alice/Pictures/") for name in archive.namelist())
    assert Restore.objects.get(kind="files").status == "completed"


def test_a_selection_that_breaks_while_read_ends_the_zip_whole_and_says_so():
    def items():
        yield ZipItem("/first.txt", lambda: io.BytesIO(b"first"))
        raise OSError("the vault answered 503")

    archive = zipfile.ZipFile(io.BytesIO(b"".join(stream_zip(items()))))

    assert archive.testzip() is None and archive.read("first.txt") == b"first"
    assert (
        "INCOMPLETE: the selection could not be read to its end (the vault answered 503)"
        in archive.read(REPORT_NAME).decode()
    )
