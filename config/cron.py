"""Repeating work, scheduled by RQ's own cron scheduler: `python manage.py rqcron config.cron`.

Each app's periodic functions are registered here so one file shows everything that repeats.
"""

from rq import cron

from alerts.jobs import evaluate_alerts
from instant.reaper import reap_instant_leftovers
from inventory.actions import enqueue_all_syncs
from jobs.maintenance import reap_orphaned_runs
from protection.scheduling import tick
from recovery.catalog.jobs import enqueue_nightly_backfill
from restore_tests.scheduling import tick as restore_test_tick
from vault.jobs import enqueue_lagging_replications, enqueue_maintenance
from vault.usage import record_storage_sample

cron.register(reap_orphaned_runs, queue_name="maintenance", interval=60, job_timeout=300)
# The live watcher applies changes within seconds; this full resync is the safety net.
cron.register(enqueue_all_syncs, queue_name="maintenance", cron="*/30 * * * *", job_timeout=300)
# Backups: every minute, start the schedule slots that are due (claimed atomically per group).
cron.register(tick, queue_name="maintenance", interval=60, job_timeout=300)
# The vault: retry replications that did not happen (every 10 minutes), and nightly, one after
# another: reconcile the store with the rows, retention, garbage collection, tiering, usage count.
cron.register(enqueue_lagging_replications, queue_name="maintenance", cron="*/10 * * * *", job_timeout=300)
cron.register(enqueue_maintenance, queue_name="maintenance", cron="30 3 * * *", job_timeout=300)
# The file catalog: each backup queues its own; nightly, whatever that missed (adopted points, failures).
cron.register(enqueue_nightly_backfill, queue_name="maintenance", cron="45 4 * * *", job_timeout=300)
# Storage figures for the overview's 30-day growth chart (today's row, refreshed hourly).
cron.register(record_storage_sample, queue_name="maintenance", cron="7 * * * *", job_timeout=600)
# Alerts: every minute, open and resolve alerts from the current state, then send (or retry) their
# email and webhook notifications.
cron.register(evaluate_alerts, queue_name="maintenance", interval=60, job_timeout=300)
# Instant recoveries: stops that failed (vCenter unreachable) queued again, and NFS datastores and VMs
# left in vCenter by recoveries that are over removed (instant.reaper; instant.jobs.RETRY_MINUTES).
cron.register(reap_instant_leftovers, queue_name="maintenance", cron="*/5 * * * *", job_timeout=300)
# Restore tests: every 5 minutes, the tests that are due in an open window are queued (restore_tests).
cron.register(restore_test_tick, queue_name="maintenance", cron="*/5 * * * *", job_timeout=300)
