"""Shared fixtures: personas for the three roles, and real Redis with a real RQ worker."""

from __future__ import annotations

import django_rq
import pytest
from django.contrib.auth.models import Group
from django.test import Client
from rq import SimpleWorker

from accounts.roles import AUDITOR, BACKUP_ADMIN, RESTORE_OPERATOR

# tests.strict: under make test (VMB_STRICT_TESTS=1) a skip is a failure.
pytest_plugins = ["tests.strict", "tests.fixtures.vcsim", "tests.fixtures.azurite"]

PASSWORD = "correct horse battery staple"
QUEUES = ("default", "backup", "restore", "maintenance", "vault")


def create_test_user(username: str, role: str | None):
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user(username=username, password=PASSWORD)
    if role:
        user.groups.add(Group.objects.get(name=role))
    return user


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


def _client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def as_admin(admin) -> Client:
    return _client_for(admin)


@pytest.fixture
def as_helpdesk(helpdesk) -> Client:
    return _client_for(helpdesk)


@pytest.fixture
def as_auditor(auditor) -> Client:
    return _client_for(auditor)


@pytest.fixture
def as_norole(norole) -> Client:
    return _client_for(norole)


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
        queues = [django_rq.get_queue(name) for name in QUEUES]
        SimpleWorker(queues, connection=redis_conn).work(burst=True, with_scheduler=False)

    return work
