"""Repeating work, scheduled by RQ's own cron scheduler: `python manage.py rqcron config.cron`.

Each app's periodic functions are registered here so one file shows everything that repeats.
"""

from rq import cron

from inventory.actions import enqueue_all_syncs
from jobs.maintenance import reap_orphaned_runs
from protection.scheduling import tick

cron.register(reap_orphaned_runs, queue_name="maintenance", interval=60, job_timeout=300)
# The live watcher applies changes within seconds; this full resync is the safety net.
cron.register(enqueue_all_syncs, queue_name="maintenance", cron="*/30 * * * *", job_timeout=300)
# Backups: every minute, start the schedule slots that are due (claimed atomically per group).
cron.register(tick, queue_name="maintenance", interval=60, job_timeout=300)
