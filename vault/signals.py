"""Signals the vault sends for the apps above it (which must never be imported from here)."""

from __future__ import annotations

from django.dispatch import Signal

# A new recovery point's row was created (inside the transaction that creates it): kwargs `point`.
# Recovery catalogues its files once the transaction commits.
point_committed = Signal()
