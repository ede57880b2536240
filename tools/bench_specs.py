"""Simulator specs (tools/vcsim/main.go format) for measuring inventory reads at scale.

    python -m tools.bench_specs --folders 100 --vms-per-folder 100 > bulk.json

No Django imports: usable from plain scripts and the simulator's command line.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

FOLDERS_PER_GROUP = 10  # "Bulk/G01/F001": two levels below the root, as real inventories nest


def bulk_spec(
    folders: int = 100,
    vms_per_folder: int = 100,
    disks_mb: Sequence[int] = (1,),
    *,
    hosts: int = 4,
    datacenter: str = "DC-Bulk",
    datastore: str = "bulk-ds",
) -> dict[str, Any]:
    """One datacenter, one cluster of `hosts` hosts, one datastore, and `folders` folders of
    `vms_per_folder` generated VMs each ("vm-F001-0001"..), every VM with one disk per disks_mb entry.

    Folders are "Bulk/G01/F001".. (ten per group), so the folder tree has real depth.
    """
    if folders < 0 or vms_per_folder < 0:
        raise ValueError("folders and vms_per_folder must not be negative")
    return {
        "datacenters": [
            {
                "name": datacenter,
                "clusters": [{"name": "Cluster-Bulk", "hosts": hosts}],
                "datastores": [{"name": datastore}],
                "folders": [_folder(n, vms_per_folder, disks_mb) for n in range(1, folders + 1)],
            }
        ]
    }


def _folder(n: int, vms: int, disks_mb: Sequence[int]) -> dict[str, Any]:
    group = (n - 1) // FOLDERS_PER_GROUP + 1
    folder: dict[str, Any] = {"path": f"Bulk/G{group:02d}/F{n:03d}"}
    if vms:
        folder["generate"] = {"count": vms, "name_prefix": f"vm-F{n:03d}-", "disks_mb": list(disks_mb)}
    return folder


def bulk_vm_count(spec: dict[str, Any]) -> int:
    """How many VMs a spec describes (listed and generated)."""
    return sum(
        len(folder.get("vms", [])) + folder.get("generate", {}).get("count", 0)
        for dc in spec["datacenters"]
        for folder in dc["folders"]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench_specs", description=__doc__.split("\n")[0])
    parser.add_argument("--folders", type=int, default=100)
    parser.add_argument("--vms-per-folder", type=int, default=100)
    parser.add_argument("--disks-mb", type=int, nargs="*", default=[1])
    args = parser.parse_args(argv)
    json.dump(bulk_spec(args.folders, args.vms_per_folder, args.disks_mb), sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
