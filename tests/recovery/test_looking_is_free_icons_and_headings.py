"""Pages a person can read: the file browser's icons are inline SVG from the product's static files
(emoji show as empty boxes in Debian's Chromium), and the Vault page's Recovery Services heading
appears once when its fragment has loaded."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from django.contrib.staticfiles import finders
from django.utils import timezone

from recovery.models import RestoreGrant
from tests.factories.protection import protect_vms
from tests.factories.recovery import LINUX, point_with_disks
from tests.inventory.factories import create_test_tree, create_test_vcenter, create_test_vm
from tools import diskimages
from vault.models import RecoveryPoint

pytestmark = pytest.mark.django_db
# Pictographs Debian's Chromium has no font for (checked: ✔ ✘ ✖ ⚠ ✕ render; 🔒 📁 📄 🔗 are boxes).
EMOJI = re.compile("[\U0001f300-\U0001faff]")
RS_HEADING = re.compile(r"<h2[^>]*>\s*Azure Recovery Services vault")


def test_folder_and_file_icons_are_inline_svg_from_the_static_sprite(settings, tmp_path, helpdesk, as_helpdesk):
    settings.BACKUP_STORE_DIR = tmp_path / "store"
    vm = create_test_vm(create_test_tree(create_test_vcenter(), ["Prod"])["Prod"], "lnx-01")
    group = protect_vms("Prod", [vm])
    point = point_with_disks(vm, group, {2000: diskimages.build_ext4_disk(LINUX, size_mib=40)}, timezone.now())
    RestoreGrant.objects.create(user=helpdesk, group=group)
    as_helpdesk.post(f"/recovery/points/{point.pk}/select/", {"item": "2000:1:/etc/hostname"})

    listing = as_helpdesk.get(f"/recovery/points/{point.pk}/2000/1/", {"path": "/"}).content.decode()
    icon = r'<svg class="icon"[^>]*aria-hidden="true"[^>]*><use href="/static/img/file-icons\.svg#folder">'
    assert re.search(icon, listing)
    assert "file-icons.svg#remove" in listing  # the basket's remove button
    home = as_helpdesk.get(f"/recovery/points/{point.pk}/2000/1/", {"path": "/etc"}).content.decode()
    assert "file-icons.svg#file" in home and "Folder" in listing and "File" in home  # words for screen readers
    assert not EMOJI.search(listing) and not EMOJI.search(home)

    sprite = finders.find("img/file-icons.svg")
    assert sprite is not None
    text = Path(sprite).read_text(encoding="utf-8")
    assert all(f'<symbol id="{name}"' in text for name in ("folder", "file", "link", "remove"))


def test_the_vault_page_shows_the_recovery_services_heading_once_and_locks_as_svg(as_admin):
    vm = create_test_vm(create_test_tree(create_test_vcenter(), ["Prod"])["Prod"], "app-01")
    now = timezone.now()
    RecoveryPoint.objects.create(
        vm=vm, created=now, completed=now, consistency="crash", locked_until=now + dt.timedelta(days=30)
    )
    page = as_admin.get("/vault/").content.decode()
    assert "file-icons.svg#lock" in page and "Locked</span> until" in page and not EMOJI.search(page)
    fragment = as_admin.get("/vault/recovery-services/").content.decode()
    placeholder = re.search(r'<div[^>]*hx-get="/vault/recovery-services/"[^>]*>.*?</div>', page, re.S)
    assert placeholder is not None and 'hx-swap="outerHTML"' in placeholder.group(0)
    loaded = page.replace(placeholder.group(0), fragment)  # what the browser shows once HTMX has swapped
    assert len(RS_HEADING.findall(loaded)) == 1
