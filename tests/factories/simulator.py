"""Specs for the vCenter simulator (tools/simulator.py): the small two-datacenter inventory, and a
builder for the one-datacenter inventories most tests want."""

from __future__ import annotations

from typing import Any

Spec = dict[str, Any]
VmSpec = dict[str, Any]

SCRIPT_NAME = "<script>alert(1)</script>"
NON_LATIN_NAME = "Сервер-Ω 数据库"

# Two datacenters so names and folders are not taken from a single one by accident.
SMALL_SPEC: Spec = {
    "datacenters": [
        {
            "name": "DC-East",
            "clusters": [{"name": "Cluster-A", "hosts": 2}],
            "datastores": [{"name": "datastore1"}],
            "folders": [
                {
                    "path": "Production/Web",
                    "vms": [
                        {
                            "name": "web-01",
                            "guest_id": "windows9Server64Guest",
                            "cpus": 2,
                            "memory_mb": 4096,
                            "power_on": True,
                            "disks_mb": [64, 16],
                        },
                        {"name": SCRIPT_NAME, "guest_id": "otherLinux64Guest", "disks_mb": [8]},
                    ],
                },
                {"path": "Finance", "vms": [{"name": NON_LATIN_NAME, "power_on": True, "disks_mb": [4]}]},
                {"path": "", "vms": [{"name": "root-vm", "disks_mb": []}]},
            ],
        },
        {
            "name": "DC-West",
            "clusters": [{"name": "Cluster-B", "hosts": 1}],
            "datastores": [{"name": "west-ds"}],
            "folders": [{"path": "Lab", "generate": {"count": 3, "name_prefix": "lab-", "disks_mb": [1]}}],
        },
    ]
}


def one_datacenter(
    folders: dict[str, list[VmSpec]], *, hosts: int = 1, datastores: tuple[str, ...] = ("ds1",), **options: Any
) -> Spec:
    """A spec of datacenter "DC" (cluster "C" of `hosts` hosts) with these VMs by folder path ("" is the
    datacenter's root folder); `options` (instance_uuid, cbt_max_areas, ...) apply to the whole simulator."""
    return {
        **options,
        "datacenters": [
            {
                "name": "DC",
                "clusters": [{"name": "C", "hosts": hosts}],
                "datastores": [{"name": name} for name in datastores],
                "folders": [{"path": path, "vms": vms} for path, vms in folders.items()],
            }
        ],
    }


def prod_spec(*vms: VmSpec) -> Spec:
    """One datacenter "DC" with these VMs in the folder "Prod", the one `protect_simulator` protects."""
    return one_datacenter({"Prod": list(vms)})
