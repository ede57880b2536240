"""What a full-VM restore asks of vCenter, against the simulator (no database): a new VM from a captured
configuration, disk bytes written through the datastore API, power off, and disk layouts compared."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import io
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from inventory import vcenter
from tests.factories.simulator import NON_LATIN_NAME, one_datacenter
from tests.fixtures.vcsim import connect_to, simulator_for_module
from tools.simulator import Simulator

MiB = 1024 * 1024
GiB = 1024 * MiB
ORIGINAL_UUID = "50000000-0000-0000-0000-00000000a001"
SPEC = one_datacenter(
    {
        "Prod": [
            {
                "name": "db-01",
                "guest_id": "otherLinux64Guest",
                "cpus": 4,
                "memory_mb": 2048,
                "power_on": True,
                "disks_mb": [48, 40],
                "nics": ["VM Network"],
                "cdrom": True,
                "firmware": "efi",
                "annotation": "the orders database",
                "extra_config": {"disk.EnableUUID": "TRUE"},
                "instance_uuid": ORIGINAL_UUID,
            },
            {"name": "app-01", "disks_mb": [16, 8]},
            {"name": "taken/name 100%", "disks_mb": [1]},
        ],
        "Restored": [],
    },
    hosts=2,
    datastores=("ds1", "ds2"),
)
sim = simulator_for_module(SPEC, tls=True)


@pytest.fixture(scope="module")
def image(sim: Simulator, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 MiB of (seeded) random bytes, also behind db-01's second disk: the bytes of the point."""
    path = tmp_path_factory.mktemp("image") / "disk.raw"
    path.write_bytes(random.Random(7).randbytes(40 * MiB))
    sim.upload_disk_image("db-01", 1, path)
    return path


@pytest.fixture
def captured(sim: Simulator, conn: vcenter.Connection) -> dict[str, Any]:
    """db-01's configuration as a backup captures it."""
    return vcenter.vm_config(conn, sim.vm("db-01")["moref"])


@pytest.fixture
def target(conn: vcenter.Connection) -> dict[str, str]:
    """Where restored VMs go: the "Restored" folder, the cluster's root pool."""
    inventory = vcenter.fetch_inventory(conn, with_disks=False)
    folder = next(f for f in inventory.folders if f.name == "Restored")
    pool = next(p for p in inventory.resource_pools if p.parent_moref is None)
    return {"folder_moref": folder.moref, "pool_moref": pool.moref}


@pytest.fixture
def create(conn: vcenter.Connection, target: dict[str, str]) -> Callable[..., vcenter.VmCreated]:
    def create_vm(config: dict[str, Any], name: str, datastore_name: str = "ds2", **kwargs: Any) -> vcenter.VmCreated:
        return vcenter.create_vm_from_config(
            conn, config, name=name, datastore_name=datastore_name, **{**target, **kwargs}
        )

    return create_vm


def sha256_of(conn: vcenter.Connection, datacenter: str, datastore: str, path: str) -> str:
    digest, buffer, offset = hashlib.sha256(), vcenter.read_buffer(), 0
    with vcenter.DatastoreFile(conn, datacenter, datastore, path) as file:
        while n := file.readinto(offset, buffer):
            digest.update(buffer[:n])
            offset += n
    return digest.hexdigest()


def hardware(config: dict[str, Any]) -> dict[str, Any]:
    """What must be the same in a VM recreated from config (device keys and labels aside)."""
    controllers = {c["key"]: (c["type"], c["bus_number"]) for c in config["controllers"]}
    return {
        "guest_id": config["guest_id"],
        "num_cpu": config["num_cpu"],
        "cores_per_socket": config["cores_per_socket"],
        "memory_mb": config["memory_mb"],
        "firmware": config["firmware"],
        "hardware_version": config["hardware_version"],
        "annotation": config["annotation"],
        "controllers": sorted(controllers.values()),
        "disks": [(controllers[d["controller_key"]], d["unit_number"], d["capacity_bytes"]) for d in config["disks"]],
        "nics": [(n["type"], n["network"], n["start_connected"]) for n in config["nics"]],
        "cdroms": [(controllers[c["controller_key"]], c["unit_number"]) for c in config["cdroms"]],
        "disk.EnableUUID": config["extra_config"].get("disk.EnableUUID"),
    }


# ---- a new VM from a captured configuration ----


def test_a_vm_created_from_a_captured_config_has_its_hardware_and_a_new_identity(
    conn: vcenter.Connection, captured: dict[str, Any], create: Callable[..., vcenter.VmCreated]
) -> None:
    made = create(captured, "db-01 (restored)")

    config = vcenter.vm_config(conn, made.moref)
    assert hardware(config) == hardware(captured)
    assert config["name"] == made.name == "db-01 (restored)"
    assert config["folder_path"] == "Restored" and config["datastore"] == "ds2"
    assert vcenter.power_state(conn, made.moref) == "poweredOff"
    assert made.instance_uuid == config["instance_uuid"] != ORIGINAL_UUID
    assert config["bios_uuid"] != captured["bios_uuid"]
    assert [nic["address_type"] for nic in config["nics"]] == ["generated"]
    assert [nic["mac_address"] for nic in config["nics"]] != [nic["mac_address"] for nic in captured["nics"]]
    assert [(cd["backing"], cd["file_name"], cd["start_connected"]) for cd in config["cdroms"]] == [
        ("client", None, False)
    ]
    assert all(disk["thin"] and disk["datastore"] == "ds2" for disk in config["disks"])
    assert made.warnings == ()
    # Each disk of the point, with the flat file to write its bytes to.
    assert [(d.source_key, d.capacity_bytes) for d in made.disks] == [(2000, 48 * MiB), (2001, 40 * MiB)]
    assert [d.key for d in made.disks] == [d["key"] for d in config["disks"]]
    assert [d.flat_file for d in made.disks] == [
        "[ds2] db-01 (restored)/db-01 (restored)-flat.vmdk",
        "[ds2] db-01 (restored)/db-01 (restored)_1-flat.vmdk",
    ]


def test_an_image_written_to_a_new_disk_reads_back_byte_identical(
    conn: vcenter.Connection, captured: dict[str, Any], create: Callable[..., vcenter.VmCreated], image: Path
) -> None:
    made = create(captured, "db-01 (bytes)")
    disk = made.disks[1]
    sent: list[int] = []

    with image.open("rb") as source:
        vcenter.DatastoreFile(conn, made.datacenter, disk.datastore, disk.flat_path).write(
            source, disk.capacity_bytes, progress=sent.append
        )

    expected = hashlib.sha256(image.read_bytes()).hexdigest()
    assert sha256_of(conn, made.datacenter, disk.datastore, disk.flat_path) == expected
    assert sent == sorted(sent) and sent[-1] == 40 * MiB and len(sent) == 40 * MiB // vcenter.CHUNK_SIZE
    # The point's own disk holds the same bytes (as a backup would have read them).
    original = captured["disks"][1]
    assert sha256_of(conn, "DC", original["datastore"], original["path"].replace(".vmdk", "-flat.vmdk")) == expected


def test_writing_to_a_datastore_that_does_not_exist_is_not_found(
    conn: vcenter.Connection, captured: dict[str, Any], create: Callable[..., vcenter.VmCreated]
) -> None:
    made = create(captured, "db-01 (no datastore)")
    path = made.disks[1].flat_path
    size = 8 * MiB  # more than the server reads of a request it refuses: it answers before the end

    with pytest.raises(vcenter.NotFound, match=r"\[ds9\] .*HTTP 404"):
        vcenter.DatastoreFile(conn, made.datacenter, "ds9", path).write(io.BytesIO(bytes(size)), size)
    with pytest.raises(vcenter.NotFound, match="HTTP 404"):
        vcenter.DatastoreFile(conn, "DC-9", "ds2", path).write(io.BytesIO(bytes(size)), size)


def test_a_write_stops_when_cancelled_or_when_the_source_runs_short(
    conn: vcenter.Connection, captured: dict[str, Any], create: Callable[..., vcenter.VmCreated]
) -> None:
    made = create(captured, "db-01 (cancelled)")
    disk = made.disks[1]
    asked: list[bool] = []

    def cancel_after_two_chunks() -> bool:
        asked.append(True)
        return len(asked) > 2

    with pytest.raises(vcenter.Cancelled, match=f"after {2 * vcenter.CHUNK_SIZE} of {40 * MiB} bytes"):
        vcenter.DatastoreFile(conn, made.datacenter, disk.datastore, disk.flat_path).write(
            io.BytesIO(bytes(40 * MiB)),
            40 * MiB,
            should_cancel=cancel_after_two_chunks,
        )
    with pytest.raises(ValueError, match=f"source ended after {MiB} of {2 * MiB} bytes"):
        vcenter.DatastoreFile(conn, made.datacenter, disk.datastore, disk.flat_path).write(
            io.BytesIO(bytes(MiB)), 2 * MiB
        )


def test_a_write_cut_off_by_vcenter_going_away_is_unreachable(vcsim_factory: Callable[..., Simulator]) -> None:
    sim = vcsim_factory(SPEC)
    disk = sim.vm("app-01")["disks"][0]
    with connect_to(sim) as conn:

        def stop_vcenter(sent: int) -> None:
            sim.stop()

        with pytest.raises(vcenter.Unreachable, match=r"broke while writing \[ds1\] .* after \d+ of 16777216 bytes"):
            vcenter.DatastoreFile(conn, "DC", "ds1", disk["flat_path"]).write(
                io.BytesIO(bytes(16 * MiB)), 16 * MiB, progress=stop_vcenter
            )


def test_an_existing_name_in_the_folder_is_refused_before_anything_is_created(
    sim: Simulator,
    conn: vcenter.Connection,
    captured: dict[str, Any],
    create: Callable[..., vcenter.VmCreated],
) -> None:
    create(captured, "db-01 (twice)")
    prod = sim.vm("db-01")  # folder Prod holds "taken/name 100%" too, stored escaped
    prod_folder = vcenter.vm_config(conn, prod["moref"])["folder_moref"]
    before = {vm.moref for vm in vcenter.list_vms(conn, with_disks=False)}

    with pytest.raises(vcenter.AlreadyExists, match="a VM named 'db-01 \\(twice\\)' already exists in the folder"):
        create(captured, "db-01 (twice)")
    with pytest.raises(vcenter.AlreadyExists, match="'taken/name 100%' already exists in the folder 'Prod'"):
        create(captured, "taken/name 100%", folder_moref=prod_folder)

    assert {vm.moref for vm in vcenter.list_vms(conn, with_disks=False)} == before


@pytest.mark.parametrize(
    "name",
    [NON_LATIN_NAME + " (restored)", "web/01 \\ backup", "50%2f done, 100%", "x" * 80],
    ids=["non-latin", "slash-backslash", "percent", "80-characters"],
)
def test_hostile_names_read_back_as_given_and_their_disks_take_bytes(
    conn: vcenter.Connection, captured: dict[str, Any], create: Callable[..., vcenter.VmCreated], name: str
) -> None:
    made = create(captured, name)

    (vm,) = vcenter.fetch_vms(conn, [made.moref])
    assert vm.name == made.name == name
    disk = made.disks[0]
    data = random.Random(name).randbytes(64 * 1024)
    vcenter.DatastoreFile(conn, made.datacenter, disk.datastore, disk.flat_path).write(io.BytesIO(data), len(data))
    assert vcenter.read_datastore_file(conn, made.datacenter, disk.datastore, disk.flat_path, 0, MiB) == data


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("x" * 81, "81 characters long; vCenter allows at most 80"),
        ("/" * 30, r"30 characters long \(90 once / \\ and % are escaped\)"),
        ("", "cannot be empty"),
        (" web-01", "starts or ends with a space"),
        ("web\n01", "control character"),
    ],
    ids=["81-characters", "90-characters-escaped", "empty", "leading-space", "line-break"],
)
def test_names_that_would_not_read_back_are_refused_before_anything_is_created(
    conn: vcenter.Connection,
    captured: dict[str, Any],
    create: Callable[..., vcenter.VmCreated],
    name: str,
    message: str,
) -> None:
    before = len(vcenter.list_vms(conn, with_disks=False))
    with pytest.raises(vcenter.InvalidName, match=message):
        create(captured, name)
    assert len(vcenter.list_vms(conn, with_disks=False)) == before


def test_an_adapter_whose_network_is_gone_is_left_disconnected_with_a_warning(
    sim: Simulator, conn: vcenter.Connection, captured: dict[str, Any], create: Callable[..., vcenter.VmCreated]
) -> None:
    config = copy.deepcopy(captured)
    config["nics"][0].update(network="Backup VLAN", network_moref=None)
    config["nics"][0].update(address_type="manual", mac_address="00:50:56:00:00:01")
    host = sim.vm("db-01")["host"]

    made = create(config, "db-01 (other network)", host_moref=host)

    (nic,) = vcenter.vm_config(conn, made.moref)["nics"]
    assert (nic["type"], nic["network"], nic["start_connected"]) == ("VirtualVmxnet3", "VM Network", False)
    assert nic["mac_address"] != "00:50:56:00:00:01"
    assert any("no network named 'Backup VLAN'" in w and "disconnected" in w for w in made.warnings)
    assert any("manual MAC address 00:50:56:00:00:01" in w for w in made.warnings)
    assert vcenter.vm_config(conn, made.moref)["host_moref"] == host


def test_a_placement_or_config_that_cannot_be_used_is_refused_before_anything_is_created(
    conn: vcenter.Connection, captured: dict[str, Any], create: Callable[..., vcenter.VmCreated]
) -> None:
    before = len(vcenter.list_vms(conn, with_disks=False))
    with pytest.raises(vcenter.NotFound, match="no datastore 'ds9' available to 'C' \\(available: ds1, ds2\\)"):
        create(captured, "nowhere", datastore_name="ds9")
    with pytest.raises(vcenter.NotFound, match="folder group-v999 does not exist"):
        create(captured, "nowhere", folder_moref="group-v999")
    with pytest.raises(vcenter.NotFound, match="resource pool resgroup-999 does not exist"):
        create(captured, "nowhere", pool_moref="resgroup-999")
    with pytest.raises(vcenter.ConfigNotRestorable, match="schema 99"):
        create({**captured, "schema": 99}, "nowhere")
    broken = copy.deepcopy(captured)
    broken["controllers"] = [c for c in broken["controllers"] if not c["type"].startswith("VirtualLsiLogic")]
    with pytest.raises(vcenter.ConfigNotRestorable, match="Hard disk 1: its controller"):
        create(broken, "nowhere")
    assert len(vcenter.list_vms(conn, with_disks=False)) == before


# ---- power ----


def test_power_off_turns_a_vm_off_and_is_quiet_when_it_is_off_already(sim: Simulator, conn: vcenter.Connection) -> None:
    moref = sim.vm("db-01")["moref"]
    vcenter.power_off(conn, moref)
    assert vcenter.power_state(conn, moref) == "poweredOff"
    vcenter.power_off(conn, moref)
    assert vcenter.power_state(conn, moref) == "poweredOff"
    with pytest.raises(vcenter.NotFound):
        vcenter.power_off(conn, "vm-999999")


# ---- disk layouts ----


def test_an_untouched_vm_and_a_vm_recreated_from_its_config_have_its_layout(
    sim: Simulator, conn: vcenter.Connection, captured: dict[str, Any], create: Callable[..., vcenter.VmCreated]
) -> None:
    point = vcenter.layout_from_config(captured)
    assert [(p.position, p.capacity_bytes, p.label) for p in point] == [
        ("SCSI 0:0", 48 * MiB, "Hard disk 1"),
        ("SCSI 0:1", 40 * MiB, "Hard disk 2"),
    ]
    assert point[1].flat_file == "[ds1] db-01/db-01_1-flat.vmdk"

    assert vcenter.layout_differences(point, vcenter.disk_layout(conn, sim.vm("db-01")["moref"])) == []
    made = create(captured, "db-01 (layout)")
    assert vcenter.layout_differences(point, vcenter.disk_layout(conn, made.moref)) == []


def test_a_disk_added_or_grown_since_the_point_is_named(sim: Simulator, conn: vcenter.Connection) -> None:
    moref = sim.vm("app-01")["moref"]
    point = vcenter.layout_from_config(vcenter.vm_config(conn, moref))

    vcenter.resize_disk(conn, moref, point[1].key, 12 * MiB)
    added = vcenter.add_disk(conn, moref, 4 * MiB)

    now = vcenter.disk_layout(conn, moref)
    label = next(p.label for p in now if p.key == added)
    assert vcenter.layout_differences(point, now) == [
        "Hard disk 2 is 12 MiB now, 8 MiB in the point",
        f"{label} (SCSI 0:2, 4 MiB) was added since the point",
    ]
    assert vcenter.layout_differences(now, point) == [
        "Hard disk 2 is 8 MiB now, 12 MiB in the point",
        f"{label} (SCSI 0:2, 4 MiB) was removed since the point",
    ]
    with pytest.raises(ValueError, match="cannot shrink"):
        vcenter.resize_disk(conn, moref, point[1].key, 4 * MiB)


def test_layout_differences_speak_of_sizes_and_controllers_as_an_administrator_does() -> None:
    def place(unit: int, capacity: int, controller: str = "VirtualLsiLogicSASController") -> vcenter.DiskPlace:
        return vcenter.DiskPlace(
            key=2000 + unit,
            label=f"Hard disk {unit + 1}",
            controller_type=controller,
            bus_number=0,
            unit_number=unit,
            capacity_bytes=capacity,
            file_name=f"[ds1] vm/vm_{unit}.vmdk",
            flat_file=f"[ds1] vm/vm_{unit}-flat.vmdk",
        )

    point = [place(0, 40 * GiB), place(1, 48 * GiB), place(2, 3 * GiB // 2)]
    now = [place(0, 40 * GiB, "ParaVirtualSCSIController"), place(1, 40 * GiB), place(3, 10 * GiB + 512)]

    assert vcenter.layout_differences(point, now) == [
        "Hard disk 1 is on a VMware Paravirtual controller now, LSI Logic SAS in the point",
        "Hard disk 2 is 40 GiB now, 48 GiB in the point",
        "Hard disk 3 (SCSI 0:2, 1536 MiB) was removed since the point",
        "Hard disk 4 (SCSI 0:3, 10,737,418,752 bytes) was added since the point",
    ]
    # File names and keys are not the layout: a disk moved to another datastore is the same disk.
    moved = [
        dataclasses.replace(p, key=p.key + 7, file_name="[ds2] x.vmdk", flat_file="[ds2] x-flat.vmdk") for p in point
    ]
    assert vcenter.layout_differences(point, moved) == []
