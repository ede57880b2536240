"""VMware Tools, heartbeat and guest IP after power-on (inventory.vcenter.wait_for_guest) against the
simulator, which reports them as vCenter does: tools start a moment after power-on (config.extraConfig
"vcsim.guest.tools": seconds, or "never"), "vcsim.guest.ip" = "none" keeps the address back, and
power-off takes everything away again."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from pyVmomi import vim, vmodl

from inventory import vcenter
from inventory.vcenter import NotFound
from inventory.vcenter.soap import read_one
from inventory.vcenter.vmomi import build
from tests.factories.simulator import prod_spec
from tests.fixtures.vcsim import simulator_for_module
from tests.inventory.test_vcenter_instant import placement, write_point
from tools.simulator import Simulator


def spec_vm(name: str, tools: str | None = None, **options: object) -> dict[str, object]:
    """A spec VM with a NIC (a VM without one reports no address) and tools starting after `tools`."""
    extra = {"vcsim.guest.tools": tools} if tools is not None else {}
    if options.pop("no_ip", False):
        extra["vcsim.guest.ip"] = "none"
    return {"name": name, "disks_mb": [1], "nics": ["VM Network"], "extra_config": extra, **options}


SPEC = prod_spec(
    spec_vm("anchor-vm"),
    spec_vm("quick-01", "0.3"),
    spec_vm("quick-02", "0.3"),
    spec_vm("default-01"),
    spec_vm("silent-01", "never"),
    spec_vm("no-ip-01", "0.2", no_ip=True),
    spec_vm("watched-01", "0.5"),
    spec_vm("running-01", "0", power_on=True),
)
HEARTBEAT = "guestHeartbeatStatus"
IPV4 = re.compile(r"^10\.\d{1,3}\.\d{1,3}\.\d{1,3}$")

sim = simulator_for_module(SPEC)


def moref(sim: Simulator, name: str) -> str:
    return str(sim.vm(name)["moref"])


def test_tools_heartbeat_and_an_ip_appear_within_the_delay_after_power_on(
    sim: Simulator, conn: vcenter.Connection
) -> None:
    vm = moref(sim, "quick-01")
    before = vcenter.wait_for_guest(conn, vm, timeout=0, want_ip=False)
    assert (before.tools_running, before.heartbeat, before.ip, before.timed_out) == (False, "gray", "", True)

    vcenter.power_on(conn, vm)
    report = vcenter.wait_for_guest(conn, vm, timeout=10, want_ip=True)
    assert report.tools_running and report.heartbeat == "green" and not report.timed_out
    assert IPV4.match(report.ip)
    assert 0.1 < report.waited < 5

    props = read_one(
        conn,
        conn.ref(vim.VirtualMachine, vm),
        ["guest.toolsStatus", "guest.guestState", "guest.net", "summary.quickStats.guestHeartbeatStatus"],
    )
    assert (props["guest.toolsStatus"], props["guest.guestState"]) == ("toolsOk", "running")
    assert props["summary.quickStats.guestHeartbeatStatus"] == "green"
    assert [list(nic.ipAddress) for nic in props["guest.net"]] == [[report.ip]]

    other = moref(sim, "quick-02")
    vcenter.power_on(conn, other)
    assert vcenter.wait_for_guest(conn, other, timeout=10, want_ip=True).ip not in ("", report.ip)


def test_tools_start_after_about_a_second_by_default_and_on_vms_powered_on_by_the_spec(
    sim: Simulator, conn: vcenter.Connection
) -> None:
    assert vcenter.wait_for_guest(conn, moref(sim, "running-01"), timeout=5, want_ip=True).ready
    vm = moref(sim, "default-01")
    vcenter.power_on(conn, vm)
    assert not vcenter.wait_for_guest(conn, vm, timeout=0.2, want_ip=False).ready
    report = vcenter.wait_for_guest(conn, vm, timeout=10, want_ip=False)
    assert report.ready and not report.timed_out


def test_tools_that_never_start_time_out_with_a_gray_heartbeat(sim: Simulator, conn: vcenter.Connection) -> None:
    vm = moref(sim, "silent-01")
    vcenter.power_on(conn, vm)
    started = time.monotonic()
    report = vcenter.wait_for_guest(conn, vm, timeout=1.5, want_ip=False, poll=0.2)
    assert 1.5 <= time.monotonic() - started < 4
    assert report.timed_out and not report.tools_running
    assert (report.heartbeat, report.ip) == ("gray", "")
    assert report.waited >= 1.5


def test_a_vm_told_to_keep_its_ip_back_runs_tools_but_times_out_waiting_for_an_ip(
    sim: Simulator, conn: vcenter.Connection
) -> None:
    vm = moref(sim, "no-ip-01")
    vcenter.power_on(conn, vm)
    assert vcenter.wait_for_guest(conn, vm, timeout=10, want_ip=False).ready
    report = vcenter.wait_for_guest(conn, vm, timeout=0.6, want_ip=True, poll=0.2)
    assert report.timed_out and report.ready and report.ip == ""


def test_power_off_takes_tools_heartbeat_and_ip_away(sim: Simulator, conn: vcenter.Connection) -> None:
    vm = moref(sim, "quick-02")
    vcenter.power_on(conn, vm)  # nothing to do when it runs already
    assert vcenter.wait_for_guest(conn, vm, timeout=10, want_ip=True).ready

    vcenter.power_off(conn, vm)
    report = vcenter.wait_for_guest(conn, vm, timeout=0, want_ip=False)
    assert (report.tools_running, report.heartbeat, report.ip) == (False, "gray", "")
    props = read_one(conn, conn.ref(vim.VirtualMachine, vm), ["guest.toolsRunningStatus", "guest.net"])
    assert props["guest.toolsRunningStatus"] == "guestToolsNotRunning"
    assert all(not nic.ipAddress for nic in props.get("guest.net", []))


def test_a_power_off_before_the_tools_start_keeps_them_off(sim: Simulator, conn: vcenter.Connection) -> None:
    vm = moref(sim, "watched-01")
    vcenter.power_on(conn, vm)
    vcenter.power_off(conn, vm)
    report = vcenter.wait_for_guest(conn, vm, timeout=1.2, want_ip=False, poll=0.2)
    assert report.timed_out and (report.tools_running, report.heartbeat) == (False, "gray")


def test_waitforupdatesex_readers_see_the_heartbeat_turn_green(sim: Simulator, conn: vcenter.Connection) -> None:
    vm = conn.ref(vim.VirtualMachine, moref(sim, "watched-01"))
    pcq = vmodl.query.PropertyCollector
    collector = conn.content.propertyCollector.CreatePropertyCollector()
    try:
        spec = build(
            pcq.FilterSpec,
            objectSet=[build(pcq.ObjectSpec, obj=vm, skip=False)],
            propSet=[build(pcq.PropertySpec, type=vim.VirtualMachine, pathSet=[HEARTBEAT, "guest.ipAddress"])],
        )
        collector.CreateFilter(spec, partialUpdates=True)
        options = build(pcq.WaitOptions, maxWaitSeconds=5)
        first = collector.WaitForUpdatesEx(version="", options=options)
        assert first is not None
        seen = {c.name: c.val for f in first.filterSet for o in f.objectSet for c in o.changeSet}
        assert seen.get(HEARTBEAT) == "gray"

        vcenter.power_on(conn, vm._moId)
        version, deadline = first.version, time.monotonic() + 10
        while seen.get(HEARTBEAT) != "green" and time.monotonic() < deadline:
            update = collector.WaitForUpdatesEx(version=version, options=options)
            if update is None:
                continue
            version = update.version
            seen.update({c.name: c.val for f in update.filterSet for o in f.objectSet for c in o.changeSet})
        assert seen[HEARTBEAT] == "green"
        assert IPV4.match(seen["guest.ipAddress"])
    finally:
        collector.DestroyPropertyCollector()


def test_a_vm_registered_from_a_vmx_saying_never_times_out_and_one_without_reports(
    sim: Simulator, conn: vcenter.Connection, tmp_path: Path
) -> None:
    host, folder, pool = placement(conn, sim)
    for name, tools in (("vmx-silent", "never"), ("vmx-quick", "0.3")):
        directory = tmp_path / name
        directory.mkdir()
        write_point(directory, name, bytes(1024 * 1024))
        vmx = directory / f"{name}.vmx"
        vmx.write_text(vmx.read_text() + f'vcsim.guest.tools = "{tools}"\n')
        ds = vcenter.mount_nas_datastore(conn, host, f"guest-{name}", "127.0.0.1", str(directory), read_only=False)
        registered = vcenter.register_vm(conn, ds.name, f"{name}.vmx", name, folder, pool, host)
        options = read_one(conn, conn.ref(vim.VirtualMachine, registered.moref), ["config.extraConfig"])
        assert {o.key: o.value for o in options["config.extraConfig"]}["vcsim.guest.tools"] == tools
        vcenter.power_on(conn, registered.moref)
        report = vcenter.wait_for_guest(conn, registered.moref, timeout=1.5, want_ip=True, poll=0.2)
        if tools == "never":
            assert report.timed_out and (report.tools_running, report.heartbeat) == (False, "gray")
        else:
            assert report.ready and IPV4.match(report.ip) and not report.timed_out
        vcenter.power_off_and_unregister(conn, registered.moref)
        with pytest.raises(NotFound):
            vcenter.wait_for_guest(conn, registered.moref, timeout=0, want_ip=False)
        vcenter.unmount_datastore(conn, host, ds.moref)
