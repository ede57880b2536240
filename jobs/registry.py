"""Job kinds: every background job the product runs is registered here by its app's jobs.py."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

JobHandler = Callable[..., dict[str, Any] | None]


@dataclass(frozen=True)
class JobKind:
    name: str
    title: str
    handler: JobHandler
    queue: str = "default"
    timeout: int | None = None  # seconds; None = settings.JOB_TIMEOUT


_KINDS: dict[str, JobKind] = {}


class UnknownJobKind(KeyError):
    pass


def job_kind(name: str, *, title: str, queue: str = "default", timeout: int | None = None):
    """Register `handler(ctx, **params)` as the job kind `name`."""

    def register(handler: JobHandler) -> JobHandler:
        _KINDS[name] = JobKind(name=name, title=title, handler=handler, queue=queue, timeout=timeout)
        return handler

    return register


def get_kind(name: str) -> JobKind:
    try:
        return _KINDS[name]
    except KeyError:
        raise UnknownJobKind(name) from None


def all_kinds() -> list[JobKind]:
    return sorted(_KINDS.values(), key=lambda kind: kind.name)
