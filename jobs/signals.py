"""Signals the jobs app sends, so apps above it can react without jobs importing them."""

from __future__ import annotations

from django.dispatch import Signal

# Sent with `run_ids` (a list of JobRun primary keys) when rows were made final without their handler
# finishing: the reaper found the worker dead or the queue entry lost for good, or a queued job was
# cancelled. Whatever those runs held (backup slots, VM claims) must be released by the receivers,
# because the handler's own `finally` never ran. Sent inside the transaction that made them final.
run_finalised = Signal()
