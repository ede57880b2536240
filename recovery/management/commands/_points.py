"""Shared by the recovery commands: find a VM's point, and parse `[DISK:VOLUME:]PATH` arguments."""

from __future__ import annotations

from django.core.management.base import CommandError

from inventory.models import VirtualMachine
from recovery import browse
from vault.models import RecoveryPoint

CLI_ACTOR = "command line"


def find_point(vm_name: str, point_id: str | None) -> RecoveryPoint:
    vms = list(VirtualMachine.objects.filter(name=vm_name)[:2])
    if len(vms) != 1:
        raise CommandError(f"{vm_name!r} names {'no' if not vms else 'more than one'} VM.")
    points = RecoveryPoint.objects.filter(vm=vms[0]).select_related("vm").order_by("-created")
    if point_id:
        points = points.filter(pk__startswith=point_id.lower()) if len(point_id) < 36 else points.filter(pk=point_id)
    found = list(points[:2] if point_id else points[:1])
    if len(found) != 1:
        raise CommandError(
            f"{point_id or 'newest'}: {'no' if not found else 'more than one'} recovery point of {vm_name}."
        )
    return found[0]


def parse_item(point: RecoveryPoint, text: str) -> browse.Item:
    """`2000:2:/Users/alice`, or just `/Users/alice` when the point has one browsable volume."""
    try:
        if text.count(":") >= 2 and text.split(":", 1)[0].isdigit():
            return browse.Item.parse(text)
        browsable = [
            (view.disk.key, volume.index)
            for view in browse.disk_views(point)
            if view.layout
            for volume in view.layout.volumes
            if volume.browsable
        ]
        if len(browsable) != 1:
            choices = ", ".join(f"{d}:{v}:" for d, v in browsable) or "none"
            raise CommandError(
                f"This point has {len(browsable)} browsable volumes: prefix the path with one of {choices}"
            )
        return browse.Item.parse(f"{browsable[0][0]}:{browsable[0][1]}:{text}")
    except ValueError:
        raise CommandError(f"{text!r} is not a path inside the point (no '..', no NUL).") from None
