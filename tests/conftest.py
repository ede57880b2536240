"""Shared fixtures: personas for the three roles (and one without a role), clients logged in as them,
and real Redis with a real RQ worker. What they are built from is in tests/factories/people.py."""

from __future__ import annotations

import django_rq
import pytest
from django.conf import settings
from redis.exceptions import RedisError
from rq import SimpleWorker

from accounts.roles import AUDITOR, BACKUP_ADMIN, RESTORE_OPERATOR
from accounts.throttle import KEY_PREFIX as SIGN_IN_KEYS
from tests.factories.people import client_fixture, persona_fixture, session_client

# tests.strict: under make test (VMB_STRICT_TESTS=1) a skip is a failure.
pytest_plugins = [
    "tests.strict",
    "tests.fixtures.vcsim",
    "tests.fixtures.azurite",
    "tests.fixtures.ldap",
    "tests.fixtures.oidc",
]

# The personas: one user for each role, and one without a role.
admin = persona_fixture("alice", BACKUP_ADMIN, "Alice, backup administrator.")
helpdesk = persona_fixture("bob", RESTORE_OPERATOR, "Bob, restore operator (helpdesk).")
auditor = persona_fixture("carol", AUDITOR, "Carol, auditor (read-only).")
norole = persona_fixture("dave", None, "Dave, logged in but holding no role.")

# Clients with a logged-in session, as each persona (the pages).
as_admin = client_fixture("admin", session_client)
as_helpdesk = client_fixture("helpdesk", session_client)
as_auditor = client_fixture("auditor", session_client)
as_norole = client_fixture("norole", session_client)


@pytest.fixture
def redis_conn():
    """The test Redis (a private instance started by tools/test.py), emptied around each test."""
    connection = django_rq.get_connection("default")
    connection.flushdb()
    yield connection
    connection.flushdb()


@pytest.fixture(autouse=True)
def no_sign_in_lockouts():
    """Wrong passwords tried by earlier tests (within the lockout time) never lock a persona out of a
    later test's sign-in: the throttle's counters are cleared before each test."""
    try:
        connection = django_rq.get_connection("default")
        keys = list(connection.scan_iter(f"{SIGN_IN_KEYS}*", count=1000))
        if keys:
            connection.delete(*keys)
    except RedisError:
        pass  # a test without the test Redis (tools/test.py starts one) signs in nobody
    yield


@pytest.fixture
def run_worker(redis_conn):
    """Run every queued job with a real RQ SimpleWorker in burst mode, in this process."""

    def work() -> None:
        queues = [django_rq.get_queue(name) for name in settings.RQ_QUEUES]  # every queue workers serve
        SimpleWorker(queues, connection=redis_conn).work(burst=True, with_scheduler=False)

    return work
