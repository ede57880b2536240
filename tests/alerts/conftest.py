"""Alerts: a protected VM, settings for both channels, and a real webhook receiver (job rows: tests.factories.jobs)."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from alerts import conditions
from tests.factories.protection import POLICY, protect_vms
from tests.inventory.factories import create_test_tree, create_test_vcenter, create_test_vm

WEBHOOK_SECRET = "a-webhook-secret-of-32-characters"
RECIPIENTS = ["backup-team@example.com", "oncall@example.com"]
REAL_STORE_USAGE = conditions.store_usage


class Receiver:
    """A webhook receiver: a real HTTP server on 127.0.0.1 in a thread, recording every request.

    Its port is fixed when it is made, so it can be down (nothing listening: connection refused)
    before `start()` and after `stop()`, and come back on the same URL.
    """

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        # A token in the path and query, as chat services put one: it must never appear in logs.
        return f"http://127.0.0.1:{self.port}/hooks/T0KEN-IN-PATH?key=T0KEN-IN-QUERY"

    def start(self) -> None:
        requests = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def events(self) -> list[str]:
        return [json.loads(body)["event"] for _headers, body in self.requests]


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.stop()


@pytest.fixture
def channels(settings, receiver):
    """Email to two recipients (Django's locmem outbox) and the webhook to the test receiver."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.ALERT_EMAILS = RECIPIENTS
    settings.ALERT_WEBHOOK_URL = receiver.url
    settings.ALERT_WEBHOOK_SECRET = WEBHOOK_SECRET
    return settings


@pytest.fixture(autouse=True)
def roomy_store(monkeypatch):
    """The test machine's own disk must not raise "store nearly full"; tests that want it say so."""
    monkeypatch.setattr(conditions, "store_usage", lambda: conditions.StoreUsage(10, 100, "the test"))


@pytest.fixture
def vm(db):
    """app-01, protected by the group Prod (daily 22:00), having joined just now (so no RPO breach yet)."""
    folders = create_test_tree(create_test_vcenter(), ["Prod"])
    vm = create_test_vm(folders["Prod"], "app-01")
    protect_vms("Prod", [vm], {**POLICY, "schedule": "daily 22:00"})
    return vm
