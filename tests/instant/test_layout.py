"""The names and text files of a served point's folder, from its manifest alone."""

from __future__ import annotations

from instant.view import layout
from tests.instant.conftest import captured_config


def test_a_point_without_a_captured_configuration_gets_disk_names_and_no_vmx() -> None:
    files = layout.disk_files({"vm": "old-01"}, {"2001": 2048 * 512, "2000": 4096 * 512})
    assert [(f.key, f.descriptor_name, f.flat_name) for f in files] == [
        ("2000", "disk-2000.vmdk", "disk-2000-flat.vmdk"),
        ("2001", "disk-2001.vmdk", "disk-2001-flat.vmdk"),
    ]
    assert layout.vmx_name({"vm": "old-01"}) is None
    assert 'RW 4096 VMFS "disk-2000-flat.vmdk"' in layout.descriptor(files[0])


def test_names_from_the_vm_are_made_safe_and_unique() -> None:
    config = captured_config()
    config["name"] = 'web "01"/x'
    config["disks"] = [
        {"key": 2000, "controller_key": 1000, "unit_number": 0, "path": 'a"b/Web.vmdk'},
        {"key": 2001, "controller_key": 1000, "unit_number": 1, "path": "other/web.vmdk"},
    ]
    files = layout.disk_files({"config": config}, {"2000": 512, "2001": 512})
    assert [f.name for f in files] == ["Web", "web_2"]  # datastore names compare without case
    assert layout.vmx_name({"config": config}) == "web _01__x.vmx"
    vmx = layout.vmx({"config": config}, files)
    assert 'displayName = "web |2201|22/x"' in vmx.splitlines()


def test_an_ide_disk_gets_the_ide_adapter_and_geometry() -> None:
    config = captured_config()
    config["controllers"] = [{"kind": "ide", "key": 200, "bus_number": 0}]
    config["disks"] = [{"key": 3000, "controller_key": 200, "unit_number": 0, "path": "vm/vm.vmdk"}]
    (disk,) = layout.disk_files({"config": config}, {"3000": 1 << 30})
    text = layout.descriptor(disk)
    assert 'ddb.adapterType = "ide"' in text and 'ddb.geometry.heads = "16"' in text
    assert 'ide0:0.fileName = "vm.vmdk"' in layout.vmx({"config": config}, [disk]).splitlines()


def test_a_guest_id_is_written_as_the_name_esxi_reads_in_a_vmx() -> None:
    names = {
        "windows2019srv_64Guest": "windows2019srv-64",
        "otherLinux64Guest": "otherlinux-64",
        "ubuntu64Guest": "ubuntu-64",
        "rhel9_64Guest": "rhel9-64",
        "windows9Server64Guest": "windows9srv-64",
        "otherGuest": "other",
        "otherGuest64": "other-64",
        "": "other-64",
    }
    assert {guest_id: layout.vmx_guest_os(guest_id) for guest_id in names} == names


def test_the_captured_extra_config_lands_in_the_vmx_but_unsafe_identity_and_duplicate_keys() -> None:
    config = captured_config()
    config["extra_config"] = {
        "disk.EnableUUID": "TRUE",
        "vcsim.guest.tools": "never",
        "tools.note": 'say "hi" | bye',
        'evil = "x"\nscsi0:0.fileName': "other.vmdk",  # would add a line: not a plain key
        "bad key": "x",
        "uuid.bios": "42 1c 6f 3e 8a 1b 4c 2d-9e 8f 7a 6b 5c 4d 3e 2f",  # the original's identity
        "vc.uuid": "52 1c 6f 3e 8a 1b 4c 2d-9e 8f 7a 6b 5c 4d 3e 2f",
        "NUMVCPUS": "64",  # set already, whatever its case
    }
    files = layout.disk_files({"config": config}, {"2000": 512, "2001": 512})
    lines = layout.vmx({"config": config}, files).splitlines()
    assert 'disk.EnableUUID = "TRUE"' in lines
    assert 'vcsim.guest.tools = "never"' in lines
    assert 'tools.note = "say |22hi|22 |7C bye"' in lines
    assert 'numvcpus = "2"' in lines
    keys = [line.split(" = ", 1)[0] for line in lines]
    assert len(keys) == len({key.lower() for key in keys})
    assert not [key for key in keys if key.lower().startswith(("evil", "bad", "uuid.", "vc.uuid"))]
    assert [line for line in lines if line.startswith("scsi0:0.fileName")] == ['scsi0:0.fileName = "win-01.vmdk"']
