"""Points no backup job catalogued (adopted by the reconciler, a failed catalog job) are caught by a
nightly backfill from cron, queued once however often cron asks."""

from __future__ import annotations

import pytest

from jobs.models import JobRun
from recovery.catalog.jobs import BACKFILL_KIND, enqueue_nightly_backfill

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_nightly_backfill_is_queued_once_while_one_is_waiting():
    enqueue_nightly_backfill()
    enqueue_nightly_backfill()
    assert JobRun.objects.filter(kind=BACKFILL_KIND).count() == 1


def test_cron_registers_the_nightly_backfill():
    from rq import cron

    import config.cron  # noqa: F401  (registers on import)

    assert any(
        entry["func"] is enqueue_nightly_backfill and entry["queue_name"] == "maintenance"
        for entry in cron._job_data_registry
    )
