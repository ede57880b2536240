"""The OpenAPI schema: valid and free of warnings (`manage.py spectacular --validate --fail-on-warn`),
only for authenticated users, true to what the API really answers, and schemathesis' generated GET
requests against the WSGI app with a token never get a server error."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import schemathesis
import yaml
from django.core.management import call_command
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis.configuration import set_hypothesis_home_dir
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance
from werkzeug.test import Client as WsgiClient

from accounts.tokens import create_token
from config.wsgi import application
from jobs.models import JobRun

pytestmark = pytest.mark.django_db

# Hypothesis' caches go with the other caches rather than into .hypothesis/ in the checkout.
set_hypothesis_home_dir(Path(__file__).resolve().parents[2] / ".cache" / "hypothesis")

EXAMPLES_PER_OPERATION = 8


def test_the_schema_validates_without_warnings(tmp_path):
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out), stderr=io.StringIO())
    document = yaml.safe_load(out.read_text())
    for path in ("/api/v1/vms/{id}/", "/api/v1/points/{id}/download/", "/api/v1/backups/", "/api/v1/me/"):
        assert path in document["paths"], path
    assert set(document["components"]["securitySchemes"]) == {"tokenAuth", "cookieAuth"}
    assert not [p for p in document["components"]["schemas"]["VCenter"]["properties"] if "password" in p]


@pytest.fixture
def wsgi_in_test_transaction():
    """The real WSGI application closes the database connection when a request ends; inside a test
    that would end the test's transaction. Django's own test client keeps it open the same way."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield application
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def api(wsgi_in_test_transaction, admin, inventory, rows, disks):
    """The schema as served to an administrator, with a client sending the same token."""
    JobRun.objects.create(kind="system.check", title="System check", log=[{"t": "x", "level": "info", "msg": "m"}])
    headers = {"Authorization": f"Token {create_token(None, admin, 'schema test', 'operate')[1]}"}
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", wsgi_in_test_transaction, headers=headers)
    return schema, headers, WsgiClient(wsgi_in_test_transaction)


def test_real_answers_match_the_schema(api, inventory, rows, disks):
    schema, headers, client = api
    point, vm = disks.pk, inventory["vms"]["web-01"].pk
    urls = {
        "/api/v1/vcenters/": "/api/v1/vcenters/",
        "/api/v1/vcenters/{id}/": f"/api/v1/vcenters/{inventory['vc'].pk}/",
        "/api/v1/vms/": "/api/v1/vms/?protection=protected",
        "/api/v1/vms/{id}/": f"/api/v1/vms/{vm}/",
        "/api/v1/groups/": "/api/v1/groups/",
        "/api/v1/groups/{id}/": f"/api/v1/groups/{inventory['group'].pk}/",
        "/api/v1/jobs/": "/api/v1/jobs/",
        "/api/v1/jobs/{id}/": f"/api/v1/jobs/{JobRun.objects.get().pk}/",
        "/api/v1/points/": "/api/v1/points/",
        "/api/v1/points/{id}/": f"/api/v1/points/{rows['new'].pk}/",
        "/api/v1/points/{id}/volumes/": f"/api/v1/points/{point}/volumes/",
        "/api/v1/points/{id}/files/": f"/api/v1/points/{point}/files/?disk=2001&volume=1&path=/home",
        "/api/v1/me/": "/api/v1/me/",
        "/api/v1/restore-tests/": "/api/v1/restore-tests/?state=passed",
        "/api/v1/restore-test-policies/{id}/": f"/api/v1/restore-test-policies/{inventory['group'].pk}/",
    }
    for template, url in urls.items():
        response = client.get(url, headers=headers)
        assert response.status_code == 200, (url, response.get_data())
        schema[template]["GET"].validate_response(response)
    # Errors are described too: 400 (a bad filter), 401, 404.
    for template, url, status, auth in [
        ("/api/v1/vms/", "/api/v1/vms/?power_state=on", 400, headers),
        ("/api/v1/vms/", "/api/v1/vms/", 401, {}),
        ("/api/v1/points/{id}/files/", f"/api/v1/points/{point}/files/?disk=2001&volume=1&path=/x", 404, headers),
    ]:
        response = client.get(url, headers=auth)
        assert response.status_code == status, url
        schema[template]["GET"].validate_response(response)


def test_generated_get_requests_never_get_a_server_error(api):
    schema, headers, _client = api
    checked = []
    for result in schema.include(method="GET").get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @hypothesis_settings(
            max_examples=EXAMPLES_PER_OPERATION,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case):
            case.call_and_validate(headers=headers, checks=[not_a_server_error, response_schema_conformance])

        run()
        checked.append(operation.label)
    # 14 + vms/{id}/placement/ + search/ + instant-recoveries/ and {id}/ + restore-tests/ and {id}/ + policies/{id}/
    assert len(checked) == 21, checked


def test_the_swagger_page_works_offline_for_a_logged_in_user(as_admin):
    page = as_admin.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "http://" not in html and "https://" not in html  # no CDN
    for asset in ("swagger-ui-dist/swagger-ui-bundle.js", "swagger-ui-dist/swagger-ui.css"):
        url = f"/static/drf_spectacular_sidecar/{asset}"
        assert url in html
        response = as_admin.get(url)
        assert response.status_code == 200, url
        response.close()
