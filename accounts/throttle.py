"""Sign-in throttling: after `limit` wrong passwords for one account from one address within the
lockout period, that account is locked for that address for the lockout period.

Counting happens in Redis only (the product runs it already for its job queues), keyed by a hash of
(user name lower-cased, client address), with an expiry: a wrong password, even for a user name that
does not exist, writes nothing to the database. The caller learns when a lockout *starts* (once per
lockout, exactly: Redis' INCR is atomic, so one request alone sees the count reach the limit) and
writes the single audit row then.

Why not django-axes: it records every failed attempt in the database (AccessAttempt/AccessFailureLog
rows, one per attempt or per user name and address), which is the unauthenticated table-filling this
must avoid, and its lockout is decided in an authentication backend, which would have to be ordered
before the directory (LDAP) backend; this is 100 lines over a Redis we already run.

No Django in this module: it takes a Redis client (redis.Redis: incr, expire, set, ttl, delete), so
its rules are tested alone.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

KEY_PREFIX = "vmb:signin:"


@dataclass(frozen=True)
class Lockout:
    """A lockout that has just started for (username, address)."""

    username: str
    address: str
    attempts: int
    seconds: int


def minutes(seconds: int) -> int:
    """Whole minutes left, rounded up (a lockout with 10 seconds left is '1 minute', never '0')."""
    return max(1, math.ceil(seconds / 60))


class SignInThrottle:
    def __init__(self, redis: Any, *, limit: int, lockout_seconds: int, prefix: str = KEY_PREFIX) -> None:
        if limit < 1 or lockout_seconds < 1:
            raise ValueError("limit and lockout_seconds must be positive")
        self.redis = redis
        self.limit = limit
        self.lockout_seconds = lockout_seconds
        self.prefix = prefix

    def _key(self, kind: str, username: str, address: str) -> str:
        # Hashed: user names typed at the login page (sometimes a password typed in the wrong field)
        # are not kept readable in Redis, and keys stay short whatever is typed.
        digest = hashlib.sha256(f"{username.strip().lower()}\0{address}".encode()).hexdigest()
        return f"{self.prefix}{kind}:{digest}"

    def locked_for(self, username: str, address: str) -> int:
        """Seconds this account stays locked for this address; 0 when it is not locked."""
        ttl = int(self.redis.ttl(self._key("lock", username, address)))
        return ttl if ttl > 0 else 0

    def failed(self, username: str, address: str) -> Lockout | None:
        """Count a wrong password; the Lockout when this one starts a lockout, else None."""
        failures = self._key("failures", username, address)
        count = int(self.redis.incr(failures))
        if count == 1:
            # The window opens at the first failure: `limit` failures within the lockout period lock.
            self.redis.expire(failures, self.lockout_seconds)
        if count < self.limit:
            return None
        started = self.redis.set(self._key("lock", username, address), "1", ex=self.lockout_seconds, nx=True)
        self.redis.delete(failures)  # a new count starts when the lockout ends
        if not started:
            return None  # counted after the lock was set: already locked, already reported
        return Lockout(username.strip(), address, count, self.lockout_seconds)

    def succeeded(self, username: str, address: str) -> None:
        """The right password: earlier wrong ones from this address no longer count."""
        self.redis.delete(self._key("failures", username, address))
