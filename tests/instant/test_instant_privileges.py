"""An instant recovery started with a vCenter connection whose user lacks a privilege it needs (as the
CloudAdmin role of Azure VMware Solution may lack host storage configuration) is refused by its job
before anything is made, with one sentence naming what is missing: no datastore, no VM, no mount,
export or overlay, and the point unpinned. Against the simulator, whose privileges follow the
permissions set on it (tools/vcsim/privileges.go)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from instant import actions, supervisor
from instant.models import InstantRecovery
from inventory.actions import update_vcenter
from inventory.connection import ConnectionParams
from inventory.models import VCenter
from jobs.models import JobRun
from tests.factories.instant import instant_dir
from tests.factories.vcenter_roles import (
    CLOUDADMIN,
    CLOUDADMIN_PASSWORD,
    CLOUDADMIN_PRINCIPAL,
    admin_privileges_except,
    grant_role,
)
from tests.instant import test_instant_recovery_jobs as recovery_jobs
from tests.instant.test_instant_recovery_jobs import Lab, assert_nothing_left, datastore_names, run_job, start_lab
from vault import pins

pytestmark = pytest.mark.django_db(transaction=True)  # the supervisor's thread sees committed rows only
backed_up, supervising = recovery_jobs.backed_up, recovery_jobs.supervising  # its fixtures, shared


@pytest.fixture
def lab(vcsim_factory: Any, settings: Any, tmp_path: Path) -> Iterator[Lab]:
    """The instant recovery lab, its simulator with CloudAdmin as a second user."""

    def with_cloudadmin(spec: Any, **kwargs: Any) -> Any:
        return vcsim_factory(spec, extra_users={CLOUDADMIN: CLOUDADMIN_PASSWORD}, **kwargs)

    with instant_dir(settings):
        yield start_lab(with_cloudadmin, settings, tmp_path)


def test_a_start_whose_vcenter_user_lacks_host_storage_rights_fails_naming_them_and_leaves_nothing(
    lab: Lab, backed_up: Any, run_worker: Any, supervising: supervisor.Supervisor, admin: Any
) -> None:
    sim = lab.sim
    point = backed_up("lnx-01")  # as the default user, an administrator
    datastores = datastore_names(sim)
    grant_role(sim, CLOUDADMIN, "CloudAdmin", admin_privileges_except(sim, "Host.Config.Storage"))
    vc = VCenter.objects.get()
    update_vcenter(admin, vc, replace(ConnectionParams.of(vc), username=CLOUDADMIN, password=CLOUDADMIN_PASSWORD))

    recovery = actions.start_instant_recovery(admin, point, name="lnx-01-avs")
    assert recovery.job is not None
    run = run_job(recovery.job, run_worker)

    assert run.status == JobRun.Status.FAILED, (run.error, run.traceback)
    assert run.error.startswith(
        f"The instant recovery lnx-01-avs failed: The vCenter user {CLOUDADMIN_PRINCIPAL} lacks Host.Config.Storage, "
    )
    assert "Azure VMware Solution" in run.error and run.error.endswith("; nothing was started.")
    assert ". " not in run.error.replace("Host.Config.Storage", "") and "VirtualMachine." not in run.error
    recovery.refresh_from_db()
    assert recovery.state == InstantRecovery.State.FAILED and not recovery.vm_moref and not recovery.datastore_moref
    assert "Host.Config.Storage" in recovery.error
    assert_nothing_left(sim, recovery, supervising)  # no datastore, no VM, no mount, export or overlay
    assert datastore_names(sim) == datastores
    assert not pins.is_pinned(point)
