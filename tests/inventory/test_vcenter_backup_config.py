"""vcenter.vm_config: the configuration a backup keeps to recreate a VM (against the simulator; no database)."""

from __future__ import annotations

import json

import pytest

from inventory import vcenter
from tests.factories.simulator import one_datacenter
from tests.fixtures.vcsim import connect_to, simulator_for_module
from tools.simulator import Simulator

WEB_01 = {
    "name": "web/01",  # escaped by vCenter: web%2f01
    "guest_id": "windows9Server64Guest",
    "cpus": 4,
    "memory_mb": 8192,
    "disks_mb": [16, 8],
    "nics": ["VM Network", "VM Network"],
    "cdrom": True,
    "annotation": "Web front end\nowner: team-web",
    "firmware": "efi",
    "instance_uuid": "50123456-1111-2222-3333-444455556666",
    "extra_config": {
        "disk.EnableUUID": "TRUE",
        "guestinfo.userdata": "I2Nsb3VkLWNvbmZpZwpwYXNzd29yZDogaHVudGVyMgo=",
        "guestinfo.metadata": "{}",
        "app.adminPassword": "hunter2",
        "scsi0:0.ctkEnabled": "TRUE",
        "sched.swap.derivedName": "/vmfs/volumes/x/web-01.vswp",
    },
}
SPEC = one_datacenter({"Prod/Web": [WEB_01]})
KEYS = [
    "schema",
    "moref",
    "name",
    "instance_uuid",
    "bios_uuid",
    "guest_id",
    "guest_full_name",
    "firmware",
    "hardware_version",
    "num_cpu",
    "cores_per_socket",
    "memory_mb",
    "annotation",
    "change_tracking",
    "datacenter",
    "datacenter_moref",
    "folder_moref",
    "folder_path",
    "resource_pool_moref",
    "host_moref",
    "vmx_path",
    "datastore",
    "datastore_moref",
    "controllers",
    "disks",
    "nics",
    "cdroms",
    "extra_config",
]


sim = simulator_for_module(SPEC)


@pytest.fixture(scope="module")
def config(sim: Simulator) -> dict:
    with connect_to(sim) as conn:
        return vcenter.vm_config(conn, sim.vm("web/01")["moref"])


def test_the_capture_has_the_documented_keys_in_order_and_survives_json(config: dict) -> None:
    assert list(config) == KEYS
    assert json.loads(json.dumps(config)) == config


def test_identity_placement_and_sizing(sim: Simulator, config: dict) -> None:
    vm = sim.vm("web/01")
    assert config["schema"] == vcenter.CONFIG_SCHEMA
    assert (config["moref"], config["name"], config["instance_uuid"]) == (
        vm["moref"],
        "web/01",
        "50123456-1111-2222-3333-444455556666",
    )
    assert config["bios_uuid"]
    assert (config["guest_id"], config["firmware"], config["num_cpu"], config["memory_mb"]) == (
        "windows9Server64Guest",
        "efi",
        4,
        8192,
    )
    assert config["cores_per_socket"] == 1
    assert config["hardware_version"].startswith("vmx-")
    assert config["annotation"] == "Web front end\nowner: team-web"
    assert config["change_tracking"] is False
    assert (config["datacenter"], config["folder_path"]) == ("DC", "Prod/Web")
    assert config["folder_moref"] and config["resource_pool_moref"]
    assert config["host_moref"] == vm["host"]
    assert config["vmx_path"] == "[ds1] web%2f01/web%2f01.vmx"
    datastore = sim.manifest["datacenters"][0]["datastores"][0]
    assert (config["datastore"], config["datastore_moref"]) == ("ds1", datastore["moref"])


def test_controllers_and_disks(sim: Simulator, config: dict) -> None:
    scsi = [c for c in config["controllers"] if c["kind"] == "lsilogic-sas"]
    assert scsi == [
        {
            "type": "VirtualLsiLogicSASController",
            "kind": "lsilogic-sas",
            "key": 1000,
            "label": "SCSI controller 0",
            "bus_number": 0,
            "sharing": "noSharing",
        }
    ]
    assert {c["kind"] for c in config["controllers"]} == {"lsilogic-sas", "ide"}  # vcsim adds two IDE controllers
    manifest_disks = sim.vm("web/01")["disks"]
    assert [(d["key"], d["label"], d["controller_key"], d["unit_number"]) for d in config["disks"]] == [
        (2000, "Hard disk 1", 1000, 0),
        (2001, "Hard disk 2", 1000, 1),
    ]
    for disk, expected in zip(config["disks"], manifest_disks, strict=True):
        assert disk["capacity_bytes"] == expected["capacity_bytes"]
        assert disk["file_name"] == expected["file_name"]
        assert (disk["datastore"], disk["path"]) == ("ds1", expected["descriptor_path"])
        assert (disk["thin"], disk["disk_mode"], disk["backing"]) == (True, "persistent", "flat")
        assert disk["backing_type"] == "VirtualDiskFlatVer2BackingInfo"


def test_network_adapters_and_cdroms(config: dict) -> None:
    assert [(n["type"], n["key"], n["network"]) for n in config["nics"]] == [
        ("VirtualVmxnet3", 4000, "VM Network"),
        ("VirtualVmxnet3", 4001, "VM Network"),
    ]
    for nic in config["nics"]:
        assert nic["network_moref"]
        assert len(nic["mac_address"].split(":")) == 6
        assert (nic["connected"], nic["start_connected"]) == (True, True)
    assert len({n["mac_address"] for n in config["nics"]}) == 2
    assert config["cdroms"] == [
        {
            "key": 3000,
            "label": config["cdroms"][0]["label"],
            "controller_key": 200,
            "unit_number": 0,
            "backing": "client",
            "file_name": None,
            "device_name": "",
            "connected": False,
            "start_connected": False,
        }
    ]


def test_extra_config_keeps_settings_and_drops_secrets_and_host_state(config: dict) -> None:
    extra = config["extra_config"]
    assert extra["disk.EnableUUID"] == "TRUE"
    assert list(extra) == sorted(extra)
    assert not [key for key in extra if key.startswith("guestinfo.")]
    for dropped in ("app.adminPassword", "scsi0:0.ctkEnabled", "sched.swap.derivedName"):
        assert dropped not in extra
    assert "hunter2" not in json.dumps(config)


def test_an_unknown_vm_is_not_found(sim: Simulator) -> None:
    with connect_to(sim) as conn, pytest.raises(vcenter.NotFound):
        vcenter.vm_config(conn, "vm-999999")


def test_change_tracking_shows_once_enabled(sim: Simulator) -> None:
    moref = sim.vm("web/01")["moref"]
    with connect_to(sim) as conn:
        vcenter.enable_change_tracking(conn, moref)
        try:
            assert vcenter.vm_config(conn, moref)["change_tracking"] is True
        finally:
            vcenter.enable_change_tracking(conn, moref, False)
