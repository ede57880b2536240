"""Shared fixtures: personas for the three roles (and one without a role), clients logged in as them,
and real Redis with a real RQ worker. What they are built from is in tests/factories/people.py."""

from __future__ import annotations

import django_rq
import pytest
from django.conf import settings
from rq import SimpleWorker

from accounts.roles import AUDITOR, BACKUP_ADMIN, RESTORE_OPERATOR
from tests.factories.people import client_fixture, create_test_user, session_client

# tests.strict: under make test (VMB_STRICT_TESTS=1) a skip is a failure.
pytest_plugins = ["tests.strict", "tests.fixtures.vcsim", "tests.fixtures.azurite"]


@pytest.fixture
def admin(db):
    """Alice, backup administrator."""
    return create_test_user("alice", BACKUP_ADMIN)


@pytest.fixture
def helpdesk(db):
    """Bob, restore operator (helpdesk)."""
    return create_test_user("bob", RESTORE_OPERATOR)


@pytest.fixture
def auditor(db):
    """Carol, auditor (read-only)."""
    return create_test_user("carol", AUDITOR)


@pytest.fixture
def norole(db):
    """Dave, logged in but holding no role."""
    return create_test_user("dave", None)


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


@pytest.fixture
def run_worker(redis_conn):
    """Run every queued job with a real RQ SimpleWorker in burst mode, in this process."""

    def work() -> None:
        queues = [django_rq.get_queue(name) for name in settings.RQ_QUEUES]  # every queue workers serve
        SimpleWorker(queues, connection=redis_conn).work(burst=True, with_scheduler=False)

    return work
