"""Where a restore can put a VM, and how people name those places.

A folder, cluster, host, resource pool, datastore or network is named by its inventory path as govc
writes it ("DC0/vm/Prod", "DC0/host/DC0_C0/Resources", "DC0/datastore/ds1", "DC0/network/VM Network";
a "/" inside a name is written %2f, as vCenter stores it), by its id, or by its plain name when that
name is unique among the candidates. A name that fits several gives one sentence listing their paths.
The restore page, the JSON API and `manage.py restore-vm` all resolve through `resolve`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Model, Q, QuerySet

from inventory import vcenter
from inventory.models import Cluster, Datastore, Folder, Host, Network, ResourcePool, VirtualMachine


class PlacementError(ValueError):
    """A place that cannot be resolved; the message is one sentence for the person who typed it."""


@dataclass(frozen=True)
class Kind:
    model: type[Model]
    singular: str
    plural: str


KINDS: dict[str, Kind] = {
    "folder": Kind(Folder, "folder", "folders"),
    "cluster": Kind(Cluster, "cluster", "clusters"),
    "host": Kind(Host, "host", "hosts"),
    "pool": Kind(ResourcePool, "resource pool", "resource pools"),
    "datastore": Kind(Datastore, "datastore", "datastores"),
    "network": Kind(Network, "network", "networks"),
}
_LISTED = 10  # candidates named in an error, at most


def candidates(kind: str, vm: VirtualMachine) -> QuerySet[Any]:
    """The objects of a kind a restore of this VM can target: those of its vCenter and datacenter
    (folders not removed), ordered by path."""
    model = KINDS[kind].model
    found = model._default_manager.filter(vcenter_id=vm.vcenter_id, datacenter_id=vm.datacenter_id)
    if model is Folder:
        found = found.filter(removed_at__isnull=True)
    return found.order_by("inventory_path", "name", "pk")


def label(obj: Any) -> str:
    """How a target is shown: its inventory path (its name until the next sync fills the path in)."""
    return str(obj.inventory_path or obj.name)


def resolve(kind: str, value: Any, among: QuerySet[Any]) -> Any:
    """The one object of `among` that `value` names: an id (an int, or digits that are the id of one
    of them), an inventory path, a folder's short path ("DC/Prod", as grants and pages show it) or a
    plain name unique among them. PlacementError otherwise, saying why."""
    what = KINDS[kind]
    if isinstance(value, int) and not isinstance(value, bool):
        found = among.filter(pk=value).first()
        if found is None:
            raise PlacementError(f"There is no {what.singular} with id {value} here.")
        return found
    text = str(value).strip().strip("/")
    if not text:
        raise PlacementError(f"Name a {what.singular}.")
    if text.isdigit() and (by_id := among.filter(pk=int(text)).first()) is not None:
        return by_id
    by_path = Q(inventory_path=text)
    if what.model is Folder:
        by_path |= Q(path=text) | Q(path=vcenter.unescape_name(text))
    matches = list(among.filter(by_path)[:2])
    if not matches:  # a plain name, as shown ("a/b") or as stored ("a%2fb")
        matches = list(among.filter(name__in={text, vcenter.unescape_name(text)}).order_by("inventory_path"))
    if len(matches) == 1:
        return matches[0]
    if matches:
        paths = ", ".join(label(m) for m in matches[:_LISTED])
        more = f" and {len(matches) - _LISTED} more" if len(matches) > _LISTED else ""
        raise PlacementError(f"{text!r} names {len(matches)} {what.plural}: {paths}{more}; give the path.")
    known = [label(obj) for obj in among[: _LISTED + 1]]
    hint = (
        f" Known {what.plural}: {', '.join(known[:_LISTED])}{', …' if len(known) > _LISTED else ''}." if known else ""
    )
    raise PlacementError(f"There is no {what.singular} {text!r} here.{hint}")
