"""Azure Blob Storage as a vault back end (`blobs.Backend`); Azurite stands in for it in tests.

One `ContainerClient` per back end; Azure SDK clients are thread-safe, so replication's upload
threads share it. Every failure leaves as a `BackendError` (or `BlobNotFound`, `BlobArchived`) whose
one-line message names the account, the container and the blob, never a key or a SAS token.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from azure.core import exceptions as azure_errors
from azure.storage.blob import ContainerClient, ImmutabilityPolicy, RehydratePriority

from .blobs import (
    HOT,
    BackendError,
    BlobArchived,
    BlobInfo,
    BlobNotFound,
    check_blob_name,
    check_range,
    check_tags,
    check_tier,
    check_until,
)

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

log = logging.getLogger(__name__)

# Seconds to open a connection, and to wait for the next bytes of an answer. The SDK's defaults (20 s,
# 60 s) stay otherwise; its default retry policy (exponential, 3 retries) applies to both.
CONNECTION_TIMEOUT = 10
READ_TIMEOUT = 120

# A SAS token's signature, should a URL ever reach a message.
_SAS_SIGNATURE = re.compile(r"\bsig=[^&\s'\"]*", re.IGNORECASE)


@functools.cache
def default_credential() -> TokenCredential:
    """azure-identity's DefaultAzureCredential (managed identity, workload identity, environment, Azure
    CLI...), built on first use and shared: it caches tokens. Imported here because azure-identity is
    slow to import and only this way of signing in needs it."""
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


def _code(err: azure_errors.HttpResponseError) -> str:
    # The storage SDK sets error_code on the errors it raises (process_storage_error); azure-core's
    # HttpResponseError does not declare it.
    code = getattr(err, "error_code", None)
    return str(getattr(code, "value", code) or "")


def _first_line(text: str) -> str:
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return _SAS_SIGNATURE.sub("sig=(hidden)", lines[0]) if lines else ""


def _root_cause(err: BaseException) -> str:
    """The innermost reason of a connection failure ("Connection refused", "Name or service not
    known", "timed out"), not urllib3's wrapper text."""
    seen: set[int] = set()
    reason = _first_line(str(err))
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError):  # the deepest one wins: socket errors sit at the bottom
            reason = current.strerror or _first_line(str(current)) or reason
        inner = getattr(current, "inner_exception", None)
        current = inner if isinstance(inner, BaseException) else (current.__cause__ or current.__context__)
    return reason


def _tier(value: Any) -> str:
    return str(getattr(value, "value", value) or HOT)


def _rehydrating(archive_status: Any) -> bool:
    # "rehydrate-pending-to-hot", "-to-cool", "-to-cold" while Azure brings an Archive blob back.
    return str(getattr(archive_status, "value", archive_status) or "").startswith("rehydrate-pending")


class AzureBlobBackend:
    """Blobs in one container of an Azure Storage account."""

    supports_tiers = True

    def __init__(self, client: ContainerClient, *, page_size: int | None = None) -> None:
        self._client = client
        host = urlsplit(client.url).netloc
        self.account = client.account_name or host  # the SDK finds no name in a custom domain
        self.container = client.container_name
        self.endpoint = host  # in messages: "cannot reach ACCOUNT.blob.core.windows.net"
        self.page_size = page_size  # blobs per listing request (Azure: up to 5000); None: the service's
        self.description = f"Azure Blob {self.account}/{self.container}"

    @staticmethod
    def _options(options: dict[str, Any]) -> dict[str, Any]:
        # Anything else (retry_total=0, ...) goes to the SDK as it is.
        return {"connection_timeout": CONNECTION_TIMEOUT, "read_timeout": READ_TIMEOUT, **options}

    @classmethod
    def from_connection_string(
        cls, conn_str: str, container: str, *, page_size: int | None = None, **options: Any
    ) -> AzureBlobBackend:
        """From a storage account's connection string (account key or SAS, or Azurite's)."""
        try:
            client = ContainerClient.from_connection_string(conn_str, container, **cls._options(options))
        except ValueError:
            # The SDK's message may quote the string, which holds the key: say what is expected instead.
            raise BackendError(
                "invalid Azure Storage connection string: expected "
                "'DefaultEndpointsProtocol=https;AccountName=...;AccountKey=...' or one with "
                "BlobEndpoint and SharedAccessSignature"
            ) from None
        return cls(client, page_size=page_size)

    @classmethod
    def from_account(
        cls,
        account_url: str,
        container: str,
        credential: str | TokenCredential | None,
        *,
        page_size: int | None = None,
        **options: Any,
    ) -> AzureBlobBackend:
        """From the account's blob endpoint (`https://ACCOUNT.blob.core.windows.net`) and a credential:
        a SAS token, an account key, or a TokenCredential such as `default_credential()`."""
        try:
            client = ContainerClient(account_url, container, credential=credential, **cls._options(options))
        except ValueError as err:
            url = account_url.partition("?")[0]  # a pasted URL may carry a SAS token
            raise BackendError(f"invalid Azure Blob account URL {url!r}: {_first_line(str(err))}") from None
        return cls(client, page_size=page_size)

    def close(self) -> None:
        """Close the client's pooled connections."""
        self._client.close()

    # -- errors

    def _where(self, action: str, name: str | None) -> str:
        return f"{self.description}: {action} {name!r}" if name is not None else f"{self.description}: {action}"

    def _error(self, err: Exception, action: str, name: str | None = None) -> BackendError:
        where = self._where(action, name)
        if isinstance(err, azure_errors.HttpResponseError):
            code = _code(err)
            status = err.status_code
            if code == "BlobNotFound" and name is not None:
                return BlobNotFound(f"{self.description}: no blob {name!r}")
            if code == "ContainerNotFound":
                return BackendError(f"{where}: the container {self.container!r} does not exist")
            if code == "BlobArchived" and name is not None:
                return BlobArchived(
                    f"{where}: the blob is in the Archive tier; rehydrate it first", name, self._is_rehydrating(name)
                )
            if status is None and isinstance(err, azure_errors.ClientAuthenticationError):
                return BackendError(f"{where}: authorization failed: no token: {_first_line(err.message)}")
            if status in (401, 403) or isinstance(err, azure_errors.ClientAuthenticationError):
                return BackendError(
                    f"{where}: authorization failed (HTTP {status or '-'} {code or 'no code'}; check the "
                    f"account key, SAS token or role assignment): {_first_line(err.message)}"
                )
            return BackendError(f"{where}: HTTP {status or '-'} {code or 'no code'}: {_first_line(err.message)}")
        if isinstance(err, azure_errors.ServiceRequestError):
            return BackendError(f"{where}: cannot reach {self.endpoint}: {_root_cause(err)}")
        if isinstance(err, azure_errors.ServiceResponseError):
            return BackendError(f"{where}: no complete answer from {self.endpoint}: {_root_cause(err)}")
        return BackendError(f"{where}: {type(err).__name__}: {_first_line(str(err))}")

    def _is_rehydrating(self, name: str) -> bool:
        try:
            return _rehydrating(self._client.get_blob_client(name).get_blob_properties().archive_status)
        except azure_errors.AzureError:
            return False  # the read already failed; its error says enough

    @contextmanager
    def _translated(self, action: str, name: str | None = None) -> Iterator[None]:
        """Turn the SDK's errors inside the block into BackendError (or BlobNotFound, BlobArchived)."""
        try:
            yield
        except azure_errors.AzureError as err:
            raise self._error(err, action, name) from err

    # -- the Backend interface

    def ensure_container(self) -> bool:
        """Create the container if it is missing; True if this call created it."""
        with self._translated("creating the container"):
            try:
                self._client.create_container()
            except azure_errors.ResourceExistsError as err:
                if _code(err) == "ContainerAlreadyExists":
                    return False
                raise
        return True

    def put(self, name: str, data: bytes | memoryview, *, overwrite: bool = False) -> bool:
        check_blob_name(name)
        if not isinstance(data, bytes):
            data = bytes(data)  # the SDK reads anything else as a stream, wrongly for memoryviews
        with self._translated("writing", name):
            try:
                self._client.upload_blob(name, data, overwrite=overwrite, validate_content=True)
            except (azure_errors.ResourceExistsError, azure_errors.ResourceModifiedError):
                if not overwrite:  # 409 BlobAlreadyExists (If-None-Match: *)
                    return False
                raise
        return True

    def get(self, name: str) -> bytes:
        check_blob_name(name)
        with self._translated("reading", name):
            return self._client.download_blob(name).readall()

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        check_blob_name(name)
        check_range(offset, length)
        if length == 0:
            self.info(name)  # BlobNotFound as for any other read; the SDK refuses empty ranges
            return b""
        with self._translated("reading", name):
            try:
                return self._client.download_blob(name, offset=offset, length=length).readall()
            except azure_errors.HttpResponseError as err:
                if err.status_code == 416:  # InvalidRange: the blob exists but ends before `offset`
                    return b""
                raise

    def exists(self, name: str) -> bool:
        try:
            self._properties(name)
        except BlobNotFound:
            return False
        return True

    def _properties(self, name: str) -> Any:
        check_blob_name(name)
        with self._translated("reading the properties of", name):
            return self._client.get_blob_client(name).get_blob_properties()

    def info(self, name: str) -> BlobInfo:
        props = self._properties(name)
        tags: dict[str, str] = {}
        if props.tag_count:
            with self._translated("reading the tags of", name):
                tags = self._client.get_blob_client(name).get_blob_tags()
        return self._info(props, tags)

    @staticmethod
    def _info(props: Any, tags: dict[str, str] | None) -> BlobInfo:
        return BlobInfo(
            name=props.name,
            size=props.size,
            modified=props.last_modified.astimezone(dt.UTC),
            tier=_tier(props.blob_tier),
            rehydrating=_rehydrating(props.archive_status),
            tags=dict(tags or {}),
        )

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        blobs = iter(
            self._client.list_blobs(name_starts_with=prefix or None, include=["tags"], results_per_page=self.page_size)
        )
        while True:
            with self._translated("listing", prefix):
                props = next(blobs, None)  # fetches the next page when this one is used up
            if props is None:
                return
            yield self._info(props, props.tags)

    def delete(self, name: str) -> bool:
        check_blob_name(name)
        with self._translated("deleting", name):
            try:
                self._client.delete_blob(name)
            except azure_errors.ResourceNotFoundError as err:
                if _code(err) == "BlobNotFound":
                    return False
                raise
        return True

    def set_tier(self, name: str, tier: str, *, rehydrate_priority: str = "Standard") -> None:
        check_blob_name(name)
        check_tier(tier, rehydrate_priority)
        with self._translated(f"moving to {tier}", name):
            self._client.get_blob_client(name).set_standard_blob_tier(
                tier, rehydrate_priority=RehydratePriority(rehydrate_priority)
            )

    def set_tags(self, name: str, tags: dict[str, str]) -> None:
        check_blob_name(name)
        tags = check_tags(tags)
        with self._translated("tagging", name):
            self._client.get_blob_client(name).set_blob_tags(tags)

    def set_immutable_until(self, name: str, until: dt.datetime) -> bool:
        check_blob_name(name)
        check_until(until)
        policy = ImmutabilityPolicy(expiry_time=until.astimezone(dt.UTC), policy_mode="Unlocked")
        with self._translated("locking", name):
            try:
                self._client.get_blob_client(name).set_immutability_policy(policy)
            except azure_errors.ResourceNotFoundError:
                raise
            except azure_errors.HttpResponseError as err:
                # No version-level immutability on this account or container, no permission to set
                # it, or an emulator without it (Azurite: 501): the vault's own retention lock still
                # applies.
                log.info("%s: immutability not available: %s", self._where("locking", name), _first_line(err.message))
                return False
        return True
