"""Sign-in throttling on the login page (accounts/signin.py over accounts/throttle.py), against the
test Redis: wrong passwords lock an account for one address, the right password is refused meanwhile,
one audit row per lockout, and wrong user names cost the database nothing."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from accounts.signin import sign_in_throttle
from accounts.throttle import SignInThrottle
from audit.models import AuditEntry
from tests.factories.people import PASSWORD

pytestmark = pytest.mark.django_db

LIMIT = 3
ATTACKER, OFFICE = "203.0.113.7", "198.51.100.20"


@pytest.fixture(autouse=True)
def throttle_settings(settings: Any, redis_conn: Any) -> None:
    settings.LOGIN_FAILURE_LIMIT = LIMIT
    settings.LOGIN_LOCKOUT_MINUTES = 15
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def sign_in(username: str, password: str, address: str, **headers: str) -> Any:
    return Client(REMOTE_ADDR=address).post("/login/", {"username": username, "password": password}, headers=headers)


def refused_as_locked(response: Any) -> bool:
    text = response.content.decode()
    return response.status_code == 200 and "Too many failed sign-ins for this account from your address" in text


def test_after_the_limit_the_right_password_is_refused_for_that_address_and_one_audit_entry_says_so(admin):
    before = AuditEntry.objects.count()
    for _ in range(LIMIT - 1):
        response = sign_in("alice", "wrong", ATTACKER)
        assert response.status_code == 200 and not refused_as_locked(response)
    last = sign_in("alice", "wrong", ATTACKER)
    assert refused_as_locked(last)
    assert "try again in 15 minutes." in last.content.decode()

    right = sign_in("alice", PASSWORD, ATTACKER)
    assert refused_as_locked(right) and "_auth_user_id" not in right.client.session
    assert refused_as_locked(sign_in("ALICE", PASSWORD, ATTACKER))  # the same account, however typed
    for _ in range(5):  # more attempts while locked add nothing
        sign_in("alice", "wrong", ATTACKER)

    entries = AuditEntry.objects.filter(action="user.locked_out")
    assert entries.count() == 1
    entry = entries.get()
    assert entry.target_label == "alice" and entry.target_id == str(admin.pk)
    assert entry.details == {"address": ATTACKER, "attempts": LIMIT, "minutes": 15}
    assert entry.actor is None and entry.actor_name == "sign-in throttle"
    assert AuditEntry.objects.count() == before + 1  # the lockout, and not one row per attempt


def test_the_account_still_signs_in_from_another_address(admin):
    for _ in range(LIMIT):
        sign_in("alice", "wrong", ATTACKER)
    response = sign_in("alice", PASSWORD, OFFICE)
    assert response.status_code == 302 and response.client.session["_auth_user_id"] == str(admin.pk)


def test_a_right_password_before_the_limit_starts_the_count_again(admin):
    for _ in range(LIMIT - 1):
        sign_in("alice", "wrong", OFFICE)
    assert sign_in("alice", PASSWORD, OFFICE).status_code == 302
    for _ in range(LIMIT - 1):
        sign_in("alice", "wrong", OFFICE)
    assert sign_in("alice", PASSWORD, OFFICE).status_code == 302
    assert not AuditEntry.objects.filter(action="user.locked_out").exists()


def test_wrong_user_names_are_throttled_but_write_nothing_to_the_database(admin):
    before = AuditEntry.objects.count()
    with CaptureQueriesContext(connection) as queries:
        for attempt in range(3 * LIMIT):
            response = sign_in(f"nobody-{attempt % 3}", "guess", ATTACKER)
            assert response.status_code == 200
    assert refused_as_locked(sign_in("nobody-0", "guess", ATTACKER))  # the same answer as a real account
    writes = [q["sql"] for q in queries.captured_queries if not q["sql"].lstrip().upper().startswith("SELECT")]
    assert writes == []
    assert AuditEntry.objects.count() == before


def test_forwarded_for_is_ignored_unless_behind_the_proxy(admin, settings):
    settings.BEHIND_PROXY = False
    for attempt in range(LIMIT):  # a client inventing a new X-Forwarded-For each time is still one address
        sign_in("alice", "wrong", ATTACKER, **{"X-Forwarded-For": f"10.0.0.{attempt}"})
    assert refused_as_locked(sign_in("alice", PASSWORD, ATTACKER, **{"X-Forwarded-For": "10.9.9.9"}))


def test_behind_the_proxy_the_address_the_proxy_appended_counts(admin, settings):
    settings.BEHIND_PROXY = True
    proxy = "127.0.0.1"
    for attempt in range(LIMIT):  # what the client sent comes first; the proxy appends what it saw
        sign_in("alice", "wrong", proxy, **{"X-Forwarded-For": f"10.0.0.{attempt}, {ATTACKER}"})
    assert refused_as_locked(sign_in("alice", PASSWORD, proxy, **{"X-Forwarded-For": ATTACKER}))
    assert sign_in("alice", PASSWORD, proxy, **{"X-Forwarded-For": OFFICE}).status_code == 302
    assert AuditEntry.objects.get(action="user.locked_out").details["address"] == ATTACKER


def test_a_lockout_ends_after_its_time_and_the_next_one_is_audited_again(redis_conn):
    throttle = SignInThrottle(redis_conn, limit=2, lockout_seconds=1)
    assert throttle.failed("Bob", ATTACKER) is None
    lockout = throttle.failed("bob", ATTACKER)
    assert lockout is not None and lockout.attempts == 2 and lockout.address == ATTACKER
    assert throttle.locked_for("BOB", ATTACKER) == 1 and throttle.locked_for("bob", OFFICE) == 0
    assert throttle.failed("bob", ATTACKER) is None  # counted while locked: not a second lockout
    time.sleep(1.1)
    assert throttle.locked_for("bob", ATTACKER) == 0
    assert throttle.failed("bob", ATTACKER) is None
    assert throttle.failed("bob", ATTACKER) is not None


def test_names_typed_at_the_login_page_are_not_kept_readable_in_redis(redis_conn, settings):
    sign_in_throttle().failed("alice-password-typed-in-the-wrong-field", ATTACKER)
    keys = [key.decode() for key in redis_conn.keys("vmb:signin:*")]
    assert keys and not any("alice" in key or ATTACKER in key for key in keys)
