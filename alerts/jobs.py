"""Repeating work of the alerts app, registered in config/cron.py."""

from __future__ import annotations

from typing import Any

from alerts.evaluation import evaluate


def evaluate_alerts() -> dict[str, Any]:
    """Every minute: open, refresh and resolve alerts, then send (or retry) their notifications.

    A plain function rather than a JobRun kind, like the scheduler's tick: one row a minute would
    bury the Jobs page.
    """
    changes = evaluate()
    return {
        "opened": len(changes.opened),
        "resolved": len(changes.resolved),
        "refreshed": changes.refreshed,
        "failed_checks": changes.failed_checks,
    }
