"""The Recovery Services status reader, driven through the Azure SDK's own pipeline by a fake transport.

The answers are hand-made responses in the shape Azure Resource Manager gives for the SDK's API version, written
from the REST API reference, not recorded from a live vault: arm_responses/recovery_services/*.json (one request
and its response per file). The transport answers only the requests a file names and fails the test on any
other; no request leaves the machine.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest import HttpResponse
from django.template.loader import render_to_string

from vault.models import VaultSettings as VaultSettingsRow  # the product's row, not the Azure vault's settings
from vault.recovery_services import (
    API_VERSION,
    BackupJob,
    ProtectedItem,
    RecoveryServicesConfig,
    RecoveryServicesError,
    RecoveryServicesStatus,
    VaultSettings,
    fetch_status,
)

ARM_RESPONSES = Path(__file__).parent / "arm_responses" / "recovery_services"
ARM_HOST = "management.azure.com"
NOW = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
# Looks like a JWT on purpose: the scrubbing of messages is tested against it.
TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL21hbmFnZW1lbnQuYXp1cmUuY29tIn0.c2lnbmF0dXJl"
CONFIG = RecoveryServicesConfig(
    subscription_id="6f1c2e4a-3b5d-4c7e-9a1b-2d3e4f5a6b7c",
    resource_group="rg-backup-prod",
    vault_name="contoso-mabs-vault",
)
HEALTHY = ("vault_config", "storage_config", "engines", "protected_items_page1", "protected_items_page2", "jobs")


# --- fake transport -------------------------------------------------------------------------------------------


class CannedResponse(HttpResponse):
    """A complete, in-memory azure.core.rest.HttpResponse (the ABC azure-core documents for custom transports)."""

    def __init__(self, request, status: int, headers: dict[str, str], body) -> None:
        self._request = request
        self._status = status
        self._headers = dict(headers)
        self._content = b"" if body is None else json.dumps(body).encode()
        self._encoding = None
        self._closed = False

    @property
    def request(self):
        return self._request

    @property
    def status_code(self) -> int:
        return self._status

    @property
    def headers(self):
        from azure.core.utils import case_insensitive_dict

        return case_insensitive_dict(self._headers)

    @property
    def reason(self) -> str:
        return {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}.get(
            self._status, ""
        )

    @property
    def content_type(self):
        return self.headers.get("Content-Type")

    @property
    def is_closed(self) -> bool:
        return self._closed

    @property
    def is_stream_consumed(self) -> bool:
        return True

    @property
    def encoding(self):
        return self._encoding or "utf-8"

    @encoding.setter
    def encoding(self, value) -> None:
        self._encoding = value

    @property
    def url(self) -> str:
        return self._request.url

    @property
    def content(self) -> bytes:
        return self._content

    def text(self, encoding=None) -> str:
        return self._content.decode(encoding or self.encoding)

    def json(self):
        return json.loads(self._content) if self._content else None

    def raise_for_status(self) -> None:
        if self._status >= 400:
            from azure.core.exceptions import HttpResponseError

            raise HttpResponseError(response=self)

    def __enter__(self):
        return self

    def __exit__(self, *args) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True

    def read(self) -> bytes:
        return self._content

    def iter_raw(self, **kwargs):
        yield self._content

    def iter_bytes(self, **kwargs):
        yield self._content


class FakeArmTransport(HttpTransport):
    """Answers requests from hand-made exchanges matched by method, host, path (case-insensitive, as ARM's are)
    and the exact set of query parameters ("*" in a file: present with any value). Anything else fails."""

    def __init__(
        self,
        *names: str,
        replace: dict[str, str] | None = None,
        forbid_all: bool = False,
        fail_with: Exception | None = None,
    ):
        chosen = [(replace or {}).get(name, name) for name in names]
        self.exchanges = [json.loads((ARM_RESPONSES / f"{name}.json").read_text()) for name in chosen]
        if forbid_all:  # every request answered with ARM's 403, as for an identity without any role on the vault
            forbidden = json.loads((ARM_RESPONSES / "error_403_jobs.json").read_text())["response"]
            for exchange in self.exchanges:
                exchange["response"] = forbidden
        self.fail_with = fail_with
        self.requests = []  # every request the SDK sent, in order
        self.unexpected = []
        self.sleeps = []

    def _matches(self, exchange, request) -> bool:
        wanted = exchange["request"]
        url = urlsplit(request.url)
        query = {key: values[0] for key, values in parse_qs(url.query, keep_blank_values=True).items()}
        if request.method != wanted["method"] or url.hostname != wanted["host"] or url.scheme != "https":
            return False
        if url.path.lower() != wanted["path"].lower() or set(query) != set(wanted["query"]):
            return False
        return all(value == "*" or query[key] == value for key, value in wanted["query"].items())

    def send(self, request, **kwargs):
        self.requests.append(request)
        if self.fail_with is not None:
            raise self.fail_with
        for exchange in self.exchanges:
            if self._matches(exchange, request):
                answer = exchange["response"]
                return CannedResponse(request, answer["status"], answer["headers"], answer["body"])
        self.unexpected.append(f"{request.method} {request.url}")
        raise AssertionError(f"unexpected request, no hand-made response matches: {request.method} {request.url}")

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *args) -> None:
        pass

    def sleep(self, duration: float) -> None:
        self.sleeps.append(duration)  # retries back off without waiting


class FixedTokenCredential:
    """A TokenCredential that hands out one fixed token and records the scopes it was asked for."""

    def __init__(self, token: str = TOKEN):
        self.token = token
        self.scopes = []

    def get_token(self, *scopes, **kwargs) -> AccessToken:
        self.scopes.extend(scopes)
        return AccessToken(self.token, int(time.time()) + 3600)


class RefusingCredential:
    """What azure-identity raises when Entra ID rejects a client secret."""

    def get_token(self, *scopes, **kwargs) -> AccessToken:
        raise ClientAuthenticationError(
            "ClientSecretCredential.get_token failed: AADSTS7000215: Invalid client secret provided. "
            f"Ensure the secret being sent in the request is the client secret value. Bearer {TOKEN}"
        )


def fetch(*names: str, credential=None, **answers):
    transport = FakeArmTransport(*names, **answers)
    status = fetch_status(CONFIG, credential or FixedTokenCredential(), transport=transport, now=NOW)
    assert not transport.unexpected
    return status, transport


def failure(*names: str, credential=None, **answers) -> tuple[str, FakeArmTransport]:
    transport = FakeArmTransport(*names, **answers)
    with pytest.raises(RecoveryServicesError) as raised:
        fetch_status(CONFIG, credential or FixedTokenCredential(), transport=transport, now=NOW)
    message = str(raised.value)
    assert "\n" not in message
    assert TOKEN not in message
    assert not transport.unexpected
    return message, transport


# --- configuration --------------------------------------------------------------------------------------------


def test_config_accepts_azure_names_and_normalises_the_subscription():
    config = RecoveryServicesConfig(" 6F1C2E4A-3B5D-4C7E-9A1B-2D3E4F5A6B7C ", "rg_backup.prod(eu)", "Vault-01")
    assert config.subscription_id == "6f1c2e4a-3b5d-4c7e-9a1b-2d3e4f5a6b7c"
    assert config.resource_id.endswith(
        "/resourceGroups/rg_backup.prod(eu)/providers/Microsoft.RecoveryServices/vaults/Vault-01"
    )


@pytest.mark.parametrize(
    ("subscription", "group", "vault", "complaint"),
    [
        ("not-a-guid", "rg", "vault1", "subscription ID must be a GUID"),
        ("6f1c2e4a-3b5d-4c7e-9a1b-2d3e4f5a6b7", "rg", "vault1", "subscription ID must be a GUID"),
        (CONFIG.subscription_id, "", "vault1", "resource group name"),
        (CONFIG.subscription_id, "rg/other", "vault1", "resource group name"),
        (CONFIG.subscription_id, "ends-with-period.", "vault1", "resource group name"),
        (CONFIG.subscription_id, "x" * 91, "vault1", "resource group name"),
        (CONFIG.subscription_id, "rg", "1vault", "vault name"),
        (CONFIG.subscription_id, "rg", "my_vault", "vault name"),
        (CONFIG.subscription_id, "rg", "v", "vault name"),
        (CONFIG.subscription_id, "rg", "v" * 51, "vault name"),
    ],
)
def test_config_rejects_invalid_names_with_one_sentence(subscription, group, vault, complaint):
    with pytest.raises(ValueError) as raised:
        RecoveryServicesConfig(subscription, group, vault)
    message = str(raised.value)
    assert complaint in message
    assert message.count(". ") == 0 and message.endswith(".")


# --- a healthy vault ------------------------------------------------------------------------------------------


def test_healthy_vault_settings_are_read():
    status, _ = fetch(*HEALTHY)
    vault = status.vault
    assert vault.soft_delete_enabled is True
    assert vault.soft_delete_retention_days == 14
    assert vault.soft_delete_label == "On, deleted backup data kept 14 days"
    assert vault.enhanced_security_enabled is True
    assert vault.storage_type == "GeoRedundant"
    assert vault.redundancy_label == "Geo-redundant (GRS)"
    assert vault.storage_type_locked is True
    assert vault.cross_region_restore is True
    assert status.section_errors == {}
    assert status.fetched_at == NOW


def test_backup_servers_are_read_with_type_version_health_and_registration_unhealthy_first():
    status, _ = fetch(*HEALTHY)
    dpm, mabs = status.engines
    assert (mabs.name, mabs.engine_type, mabs.version) == ("mabs01.contoso.local", "Azure Backup Server", "14.0.30.0")
    assert (mabs.health_status, mabs.registration_status, mabs.tone) == ("Healthy", "Registered", "ok")
    assert mabs.upgrade_available is False and mabs.protected_items_count == 4
    assert (dpm.name, dpm.engine_type, dpm.health_status, dpm.tone) == (
        "dpm2019.contoso.local",
        "DPM",
        "Unhealthy",
        "bad",
    )
    assert dpm.upgrade_available is True


def test_protected_items_of_every_kind_are_read_problems_first():
    status, _ = fetch(*HEALTHY)
    items = {item.name: item for item in status.protected_items}
    assert set(items) == {"web01", "sql01", "C:\\", "app-vm-01", "file02"}
    assert status.protected_items[0].name == "sql01"  # the failing one leads

    web = items["web01"]  # a VMware VM protected by MABS (DPMProtectedItem)
    assert (web.workload_label, web.state_label, web.last_backup_label) == ("VMware VM", "Protected", "Completed")
    assert web.last_recovery_point == datetime(2026, 11, 29, 2, 14, 37, tzinfo=UTC)
    assert web.last_backup_time is None  # MABS reports its newest copy, not the attempt
    assert (web.server, web.tone) == ("mabs01.contoso.local", "ok")

    sql = items["sql01"]
    assert (sql.state_label, sql.last_backup_label, sql.tone) == ("Protection error", "Failed", "bad")

    folder = items["C:\\"]  # a MARS agent's files and folders
    assert (folder.workload_label, folder.server, folder.tone) == ("Files and folders", "fs01.contoso.local", "ok")
    assert folder.last_backup_time == datetime(2026, 11, 29, 1, 30, 12, 730453, tzinfo=UTC)

    vm = items["app-vm-01"]  # an Azure VM backed up by Azure Backup itself (the SDK gives it as a bare ProtectedItem)
    assert vm.server == "Azure Backup"
    assert vm.last_backup_time == datetime(2026, 11, 28, 22, 31, 5, 671982, tzinfo=UTC)
    assert (vm.workload_label, vm.health_status, vm.last_backup_label, vm.tone) == (
        "Virtual machine",
        "Passed",
        "Completed",
        "ok",
    )

    pending = items["file02"]
    assert (pending.state_label, pending.last_backup_label, pending.last_recovery_point, pending.tone) == (
        "Initial backup pending",
        "—",
        None,
        "info",
    )


def test_recent_jobs_are_read_newest_first_with_duration():
    status, _ = fetch(*HEALTHY)
    assert [(job.entity_name, job.status_label, job.tone) for job in status.jobs] == [
        ("app-vm-01", "In progress", "info"),
        ("sql01", "Failed", "bad"),
        ("web01", "Completed", "ok"),
        ("fs01.contoso.local", "Completed with warnings", "warn"),
    ]
    web = status.jobs[2]
    assert (web.operation_label, web.server, web.duration_label) == ("Backup", "mabs01.contoso.local", "12 min 31 s")
    assert web.start_time == datetime(2026, 11, 29, 2, 2, 6, 223184, tzinfo=UTC)
    assert status.jobs[0].duration_label == "1 h 12 min"
    assert status.problems == 3  # the unhealthy DPM server, sql01's protection error and its failed job


def test_jobs_are_asked_for_the_last_24_hours_only():
    status, transport = fetch(*HEALTHY)
    (jobs_request,) = [r for r in transport.requests if urlsplit(r.url).path.endswith("/backupJobs")]
    odata = parse_qs(urlsplit(jobs_request.url).query)["$filter"][0]
    assert odata == "startTime eq '2026-11-28 08:00:00 AM' and endTime eq '2026-11-29 08:00:00 AM'"
    assert status.jobs_since == NOW - timedelta(hours=24)


def test_protected_items_follow_next_link_to_the_last_page():
    status, transport = fetch(*HEALTHY)
    item_requests = [r for r in transport.requests if "/backupprotecteditems" in urlsplit(r.url).path.lower()]
    assert len(item_requests) == 2
    second = parse_qs(urlsplit(item_requests[1].url).query)
    assert second["$skipToken"] == ["eyJJZCI6IjEwMDAiLCJCYXRjaCI6Mn0="]
    assert second["api-version"] == [API_VERSION]
    assert len(status.protected_items) == 5  # 3 on the first page, 2 on the second


def test_every_request_is_a_bearer_authorised_get_to_resource_manager_only():
    credential = FixedTokenCredential()
    _, transport = fetch(*HEALTHY, credential=credential)
    assert len(transport.requests) == 6
    for request in transport.requests:
        url = urlsplit(request.url)
        assert (url.scheme, url.hostname) == ("https", ARM_HOST)
        assert request.method == "GET"
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"
        assert parse_qs(url.query)["api-version"] == [API_VERSION]
    assert set(credential.scopes) == {"https://management.azure.com/.default"}


def test_a_refresh_logs_nothing_at_info(caplog):
    caplog.set_level(logging.INFO)
    fetch(*HEALTHY)
    assert [r for r in caplog.records if r.name.startswith("azure") and r.levelno >= logging.INFO] == []


# --- failures -------------------------------------------------------------------------------------------------


def test_expired_token_gives_a_clear_authentication_message():
    message, transport = failure("error_401_vault_config")
    assert message.startswith("Azure refused the credentials:")
    assert "access token expiry" in message
    assert len(transport.requests) == 1  # not retried


def test_credential_refused_by_entra_id_gives_the_same_message_without_the_token():
    message, transport = failure(*HEALTHY, credential=RefusingCredential())
    assert message.startswith("Azure refused the credentials: ClientSecretCredential.get_token failed: AADSTS7000215")
    assert "[redacted]" in message
    assert transport.requests == []  # nothing reached Azure without a token


def test_missing_vault_is_named_with_its_resource_group_and_subscription():
    message, _ = failure("error_404_vault_config")
    assert message == (
        "Vault contoso-mabs-vault not found in resource group rg-backup-prod "
        "(subscription 6f1c2e4a-3b5d-4c7e-9a1b-2d3e4f5a6b7c)."
    )


def test_forbidden_jobs_keep_the_other_sections_and_name_the_missing_permission():
    status, _ = fetch(*HEALTHY, replace={"jobs": "error_403_jobs"})
    assert status.jobs == []
    assert set(status.section_errors) == {"jobs"}
    message = status.section_errors["jobs"]
    assert "recent jobs" in message
    assert "Microsoft.RecoveryServices/Vaults/backupJobs/read" in message
    assert "a1b2c3d4" not in message  # Azure's client and object ids stay out of the page
    assert status.vault.soft_delete_enabled is True
    assert len(status.engines) == 2 and len(status.protected_items) == 5


def test_an_identity_without_any_role_gets_one_message_not_five_notices():
    message, transport = failure(*HEALTHY, forbid_all=True)
    assert message == (
        "The identity may not read vault contoso-mabs-vault: give it the Backup Reader role on the vault "
        "(or on resource group rg-backup-prod)."
    )
    assert len(transport.requests) == 5  # the second page of items is never reached


def test_other_http_errors_stop_the_read_with_status_code_and_azure_message():
    message, _ = failure(*HEALTHY, replace={"engines": "error_400_engines"})
    assert message == (
        "Azure answered HTTP 400 Bad Request for vault contoso-mabs-vault: "
        "Input provided for the call is invalid. Please check the required inputs"
    )


def test_unreachable_resource_manager_is_reported_after_a_few_quick_retries():
    error = ServiceRequestError("<urllib3.connection.HTTPSConnection object>: Failed to resolve 'management.azure.com'")
    message, transport = failure(*HEALTHY, fail_with=error)
    assert message.startswith("Cannot reach Azure Resource Manager: ")
    assert "Failed to resolve 'management.azure.com'" in message
    assert len(transport.requests) == 3  # the first try and two retries, not azure-core's default of ten


def test_a_request_without_a_hand_made_response_fails_loudly():
    transport = FakeArmTransport("vault_config")
    with pytest.raises(AssertionError, match="unexpected request"):
        fetch_status(CONFIG, FixedTokenCredential(), transport=transport, now=NOW)
    assert transport.unexpected == [
        "GET https://management.azure.com/subscriptions/6f1c2e4a-3b5d-4c7e-9a1b-2d3e4f5a6b7c/resourceGroups/"
        "rg-backup-prod/providers/Microsoft.RecoveryServices/vaults/contoso-mabs-vault/backupstorageconfig/"
        f"vaultstorageconfig?api-version={API_VERSION}"
    ]


# --- the panel ------------------------------------------------------------------------------------------------


def render(**context) -> str:
    return render_to_string("vault/_recovery_services.html", context)


def test_panel_shows_settings_tables_and_status_as_text():
    status, _ = fetch(*HEALTHY)
    html = render(status=status)
    for text in (
        "On, deleted backup data kept 14 days",
        "Geo-redundant (GRS)",
        "mabs01.contoso.local",
        "Azure Backup Server",
        "Protection error",
        "Initial backup pending",
        "Completed with warnings",
        "In progress",
        "2026-11-29 08:00",
    ):
        assert text in html, text
    assert 'class="badge status-failed">Protection error' in html
    assert TOKEN not in html and "Bearer" not in html


def test_panel_shows_a_section_error_as_a_notice_beside_the_rest():
    status, _ = fetch(*HEALTHY, replace={"jobs": "error_403_jobs"})
    html = render(status=status)
    assert 'class="notice"' in html
    assert "Microsoft.RecoveryServices/Vaults/backupJobs/read" in html
    assert "mabs01.contoso.local" in html


def test_panel_shows_an_error_or_the_not_configured_state():
    assert "Vault x not found" in render(error="Vault x not found in resource group y (subscription z).")
    html = render(not_configured=True)
    assert "No Recovery Services vault connected" in html
    empty = RecoveryServicesStatus(config=CONFIG, vault=VaultSettings(), fetched_at=NOW)
    html = render(status=empty)
    assert "No backup servers" in html and "No protected items" in html and "No jobs" in html


def test_status_words_are_labelled_for_unknown_values_too():
    assert ProtectedItem(name="x", protection_state="SomethingNew").state_label == "Something new"
    assert BackupJob(operation="ConfigureBackup", status="Cancelled", entity_name="x").tone == "warn"
    assert VaultSettings(soft_delete_state="AlwaysON", soft_delete_retention_days=30).soft_delete_label == (
        "On (always on, cannot be turned off), deleted backup data kept 30 days"
    )
    assert VaultSettings(soft_delete_state="Disabled").soft_delete_label == "Off"


# --- the Vault page's panel (vault.queries.recovery_services_panel behind the view) ---------------------------


def configure_panel(subscription: str = CONFIG.subscription_id) -> None:
    VaultSettingsRow.objects.update_or_create(
        pk=1,
        defaults={
            "rs_subscription_id": subscription,
            "rs_resource_group": CONFIG.resource_group,
            "rs_vault_name": CONFIG.vault_name,
        },
    )


@pytest.mark.django_db
def test_the_page_panel_says_not_configured_without_asking_azure(as_auditor, monkeypatch):
    monkeypatch.setattr("vault.recovery_services.default_credential", lambda: pytest.fail("no credential needed"))
    html = as_auditor.get("/vault/recovery-services/").content.decode()
    assert "No Recovery Services vault connected" in html
    assert "Refresh" not in html


@pytest.mark.django_db
def test_the_page_panel_reads_the_configured_vault_with_the_servers_credential(as_auditor, monkeypatch):
    configure_panel()
    transport = FakeArmTransport(*HEALTHY)
    credentials = []

    def server_credential():
        credentials.append(FixedTokenCredential())
        return credentials[-1]

    real_fetch = fetch_status
    monkeypatch.setattr("vault.recovery_services.default_credential", server_credential)
    monkeypatch.setattr(
        "vault.recovery_services.fetch_status",
        lambda config, credential: real_fetch(config, credential, transport=transport),
    )
    html = as_auditor.get("/vault/recovery-services/").content.decode()
    assert "mabs01.contoso.local" in html and "Geo-redundant (GRS)" in html
    assert 'hx-get="/vault/recovery-services/"' in html
    assert len(credentials) == 1 and credentials[0].scopes and TOKEN not in html


@pytest.mark.django_db
def test_the_page_panel_shows_why_stored_names_cannot_be_read(as_auditor, monkeypatch):
    configure_panel(subscription="not-a-guid")
    monkeypatch.setattr("vault.recovery_services.default_credential", lambda: pytest.fail("no read with bad names"))
    html = as_auditor.get("/vault/recovery-services/").content.decode()
    assert "Could not read the vault." in html and "subscription ID must be a GUID" in html
