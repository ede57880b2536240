"""A recovery point only the vault holds, its chunks in Azurite's Archive tier: what the "looking is
free" and rehydration tests open, count and rehydrate."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from django.contrib.auth.models import User
from django.utils import timezone

from recovery.models import RestoreGrant
from tests.factories.protection import protect_vms
from tests.factories.recovery import LINUX, point_with_disks
from tests.inventory.factories import create_test_tree, create_test_vcenter, create_test_vm
from tools import diskimages
from vault import archive, engine
from vault.engine.blobs import ARCHIVE
from vault.models import RecoveryPoint, VaultSettings
from vault.storage import local_store, remote_vault


def use_azure_vault(connection_string: str, container: str) -> None:
    config = VaultSettings.current()
    config.kind, config.container = VaultSettings.Kind.AZURE, container
    config.secret = connection_string
    config.save()


def chunk_tiers() -> set[str]:
    """The access tiers of the configured vault's chunk blobs."""
    return {info.tier for info in remote_vault().chunk_blobs().values()}


def archived_vault_point(store_dir: Path, helpdesk: User) -> RecoveryPoint:
    """An ext4 point of lnx-01 (granted to `helpdesk`) replicated to the configured vault, lost from
    the local store at `store_dir`, its chunks moved to Archive; nothing counted on the row yet."""
    vm = create_test_vm(create_test_tree(create_test_vcenter(), ["Prod"])["Prod"], "lnx-01")
    group = protect_vms("Prod", [vm])
    point = point_with_disks(vm, group, {2000: diskimages.build_ext4_disk(LINUX, size_mib=40)}, timezone.now())
    engine.replicate_point(local_store(), remote_vault(), str(point.pk))
    RecoveryPoint.objects.filter(pk=point.pk).update(vault_status="replicated", local=False)
    shutil.rmtree(store_dir)  # the server's disk is gone: only the vault holds the point
    engine.apply_tiering(remote_vault(), [str(point.pk)], ARCHIVE)
    assert chunk_tiers() == {ARCHIVE}
    RestoreGrant.objects.create(user=helpdesk, group=group)
    point.refresh_from_db()
    return point


def counted(point: RecoveryPoint) -> RecoveryPoint:
    """The point with its archive state cached, as the tiering job caches it."""
    archive.record_states(remote_vault(), [point])
    point.refresh_from_db()
    assert point.archived_chunks and point.archived_chunks > 0
    return point


def archived_point_in_azurite(
    settings: Any, store_dir: Path, azurite: Any, container: str, helpdesk: User
) -> RecoveryPoint:
    """`archived_vault_point` in Azurite's `container` (its store under `store_dir`), counted as the
    tiering job counts it: what the rehydrate route and command tests start from."""
    settings.BACKUP_STORE_DIR = store_dir
    use_azure_vault(azurite.connection_string(), container)
    return counted(archived_vault_point(store_dir, helpdesk))
