"""Repeating work, scheduled by RQ's own cron scheduler: `python manage.py rqcron config.cron`.

Each app's periodic functions are registered here so one file shows everything that repeats.
"""

from rq import cron

from jobs.maintenance import reap_orphaned_runs

cron.register(reap_orphaned_runs, queue_name="maintenance", interval=60, job_timeout=300)
