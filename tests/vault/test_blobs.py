"""The vault's storage back ends (vault/engine/blobs.py, azure_blob.py): a directory and Azure Blob
Storage (Azurite) behave the same through the `Backend` interface; then what only one of them does."""

from __future__ import annotations

import base64
import datetime as dt
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from azure.storage.blob import ContainerSasPermissions, generate_container_sas

from tools.services import AZURITE_ACCOUNT, AZURITE_KEY, free_port
from vault.engine.azure_blob import AzureBlobBackend, default_credential
from vault.engine.blobs import (
    ARCHIVE,
    COOL,
    HOT,
    Backend,
    BackendError,
    BlobArchived,
    BlobNotFound,
    DirectoryBackend,
)

NAME = "chunks/ab12/ab12cd"
HOSTILE_NAMES = [
    "",
    "../x",
    "a/../../x",
    "/abs",
    "a//b",
    "a/./b",
    "a/b/",
    "nul\x00byte",
    "back\\slash",
    "line\nbreak",
    ".tags/x",
    "a/.tmp-1234",
    "ends-with.",
    "x" * 1025,
]


@pytest.fixture(params=["directory", "azure"])
def backend(request: pytest.FixtureRequest, tmp_path) -> Backend:
    if request.param == "directory":
        root = tmp_path / "vault"
        root.mkdir()
        return DirectoryBackend(root)
    return request.getfixturevalue("azure_backend")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _connection_string(port: int, key: str = AZURITE_KEY) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={key};"
        f"BlobEndpoint=http://127.0.0.1:{port}/{AZURITE_ACCOUNT};"
    )


# -- the same behaviour from both back ends


def test_both_implement_the_backend_interface(backend):
    assert isinstance(backend, Backend)
    assert backend.description.startswith(("directory /", f"Azure Blob {AZURITE_ACCOUNT}/test-"))


def test_put_if_absent_returns_false_and_keeps_the_first_content(backend):
    assert backend.put(NAME, b"first") is True
    assert backend.put(NAME, b"second") is False
    assert backend.get(NAME) == b"first"


def test_overwrite_replaces_the_content_and_clears_the_tags(backend):
    backend.put("points/p1/manifest.json", b"old")
    backend.set_tags("points/p1/manifest.json", {"point": "p1"})

    assert backend.put("points/p1/manifest.json", b"new content", overwrite=True) is True

    assert backend.get("points/p1/manifest.json") == b"new content"
    info = backend.info("points/p1/manifest.json")
    assert (info.size, info.tags) == (11, {})


def test_overwrite_creates_a_missing_blob(backend):
    assert backend.put("locks/gc-1", b"marker", overwrite=True) is True
    assert backend.get("locks/gc-1") == b"marker"


def test_put_takes_a_memoryview(backend):
    backend.put(NAME, memoryview(b"..payload..")[2:9])
    assert backend.get(NAME) == b"payload"


def test_get_range_reads_inside_the_blob_and_stops_at_its_end(backend):
    data = bytes(range(256)) * 40
    backend.put(NAME, data)

    assert backend.get_range(NAME, 0, 10) == data[:10]
    assert backend.get_range(NAME, 1000, 500) == data[1000:1500]
    assert backend.get_range(NAME, len(data) - 40, 100) == data[-40:]
    assert backend.get_range(NAME, len(data), 10) == b""
    assert backend.get_range(NAME, len(data) + 5000, 10) == b""
    assert backend.get_range(NAME, 5, 0) == b""
    with pytest.raises(ValueError):
        backend.get_range(NAME, -1, 5)


def test_an_empty_blob_reads_back_empty(backend):
    backend.put("vault.json", b"")
    assert backend.get("vault.json") == b""
    assert backend.get_range("vault.json", 0, 10) == b""
    assert backend.info("vault.json").size == 0


def test_info_reports_size_modification_time_and_the_hot_tier(backend):
    before = _now() - dt.timedelta(seconds=2)  # Azure keeps whole seconds
    backend.put(NAME, b"12345")

    info = backend.info(NAME)

    assert (info.name, info.size, info.tier, info.rehydrating, info.tags) == (NAME, 5, HOT, False, {})
    assert info.modified.utcoffset() == dt.timedelta(0)
    assert before <= info.modified <= _now() + dt.timedelta(seconds=2)
    assert backend.exists(NAME)
    assert not backend.exists("chunks/ab12/other")
    assert not backend.exists("chunks/ab12")  # a "folder" is not a blob


def test_a_missing_blob_is_not_found_by_every_call(backend):
    name = "points/nowhere/manifest.json"
    for call in (
        lambda: backend.get(name),
        lambda: backend.get_range(name, 0, 10),
        lambda: backend.get_range(name, 0, 0),
        lambda: backend.info(name),
        lambda: backend.set_tags(name, {"a": "b"}),
        lambda: backend.set_tier(name, COOL),
    ):
        with pytest.raises(BlobNotFound, match="nowhere") as caught:
            call()
        assert isinstance(caught.value, KeyError)
    assert backend.exists(name) is False
    assert backend.delete(name) is False


def test_list_yields_the_blobs_under_a_prefix_in_name_order(backend):
    # Characters that sort before '/' ("a b", "a-x", "a.b") catch a directory walk that is not in name order.
    names = ["a/b", "a-x", "a.b", "a/a/deep", "ab", "a0", "b/c", "a b", "é/x", "z", "a/a-"]
    for name in random.Random(7).sample(names, len(names)):
        backend.put(name, name.encode())

    listed = list(backend.list())
    assert [info.name for info in listed] == sorted(names)
    assert all(info.size == len(info.name.encode()) for info in listed)
    assert [info.name for info in backend.list("a/")] == ["a/a-", "a/a/deep", "a/b"]
    assert [info.name for info in backend.list("a/a")] == ["a/a-", "a/a/deep"]
    assert [info.name for info in backend.list("a")] == sorted(n for n in names if n.startswith("a"))
    assert [info.name for info in backend.list("a/a/d")] == ["a/a/deep"]
    assert list(backend.list("nothing/")) == []


def test_delete_removes_the_blob_and_its_tags(backend):
    backend.put(NAME, b"data")
    backend.set_tags(NAME, {"point": "p1"})

    assert backend.delete(NAME) is True

    assert not backend.exists(NAME)
    assert list(backend.list()) == []
    assert backend.delete(NAME) is False
    backend.put(NAME, b"again")
    assert backend.info(NAME).tags == {}


def test_tags_round_trip_through_info_and_list(backend):
    tags = {"point": "vm-42.2026-11-25T0300", "kind": "chunk", "note": "a b+c-d.e/f:g=h_i"}
    backend.put("chunks/1", b"1")
    backend.put("chunks/2", b"2")

    backend.set_tags("chunks/1", tags)

    assert backend.info("chunks/1").tags == tags
    assert {info.name: info.tags for info in backend.list("chunks/")} == {"chunks/1": tags, "chunks/2": {}}
    backend.set_tags("chunks/1", {"kind": "chunk"})
    assert backend.info("chunks/1").tags == {"kind": "chunk"}
    backend.set_tags("chunks/1", {})
    assert backend.info("chunks/1").tags == {}


@pytest.mark.parametrize(
    "tags",
    [{f"k{i}": "v" for i in range(11)}, {"bad!": "v"}, {"k": "x" * 257}, {"": "v"}, {"k" * 129: "v"}],
    ids=["eleven", "bad-character", "long-value", "empty-name", "long-name"],
)
def test_tags_azure_would_refuse_are_refused_by_both(backend, tags):
    backend.put(NAME, b"x")
    with pytest.raises(ValueError):
        backend.set_tags(NAME, tags)


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=lambda name: repr(name)[:24])
def test_hostile_names_are_refused_by_both(backend, name):
    for call in (
        lambda: backend.put(name, b"x"),
        lambda: backend.put(name, b"x", overwrite=True),
        lambda: backend.get(name),
        lambda: backend.exists(name),
        lambda: backend.info(name),
        lambda: backend.delete(name),
        lambda: backend.set_tags(name, {}),
    ):
        with pytest.raises(ValueError, match="invalid blob name"):
            call()
    assert list(backend.list()) == []


def test_set_immutable_until_is_not_supported_by_either(backend):
    backend.put(NAME, b"x")
    assert backend.set_immutable_until(NAME, _now() + dt.timedelta(days=30)) is False
    with pytest.raises(ValueError, match="timezone"):
        backend.set_immutable_until(NAME, dt.datetime(2030, 1, 1))


def test_concurrent_puts_of_one_name_store_exactly_one_writer(backend):
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: backend.put(NAME, f"writer {i}".encode() * 1000), range(8)))

    assert results.count(True) == 1
    assert backend.get(NAME) == f"writer {results.index(True)}".encode() * 1000


def test_an_unknown_tier_is_refused(backend):
    backend.put(NAME, b"x")
    with pytest.raises(ValueError, match="tier"):
        backend.set_tier(NAME, "Frozen")
    with pytest.raises(ValueError, match="priority"):
        backend.set_tier(NAME, HOT, rehydrate_priority="Urgent")


# -- a directory


def test_a_directory_has_no_tiers_and_reports_every_blob_hot(tmp_path):
    backend = DirectoryBackend(tmp_path)
    backend.put(NAME, b"data")

    backend.set_tier(NAME, ARCHIVE)

    assert backend.supports_tiers is False
    assert backend.info(NAME).tier == HOT
    assert [info.tier for info in backend.list()] == [HOT]
    assert backend.get(NAME) == b"data"


def test_a_directory_stores_blob_a_b_c_as_the_file_root_a_b_c(tmp_path):
    backend = DirectoryBackend(str(tmp_path))
    backend.put("a/b/c", b"data")
    backend.set_tags("a/b/c", {"k": "v"})

    assert (tmp_path / "a" / "b" / "c").read_bytes() == b"data"
    files = sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*") if path.is_file())
    assert files == [".tags/a/b/c.json", "a/b/c"]  # no temporary file left behind
    assert backend.description == f"directory {tmp_path}"


def test_a_directory_lists_neither_temporary_files_nor_tags(tmp_path):
    backend = DirectoryBackend(tmp_path)
    backend.put("chunks/1", b"1")
    backend.set_tags("chunks/1", {"k": "v"})
    (tmp_path / "chunks" / ".tmp-0123456789abcdef").write_bytes(b"left by a crash")

    assert [info.name for info in backend.list()] == ["chunks/1"]


def test_a_directory_reports_the_file_modification_time_in_utc(tmp_path):
    backend = DirectoryBackend(tmp_path)
    backend.put(NAME, b"x")
    when = dt.datetime(2026, 3, 1, 12, 30, tzinfo=dt.UTC)
    os.utime(tmp_path / NAME, (when.timestamp(), when.timestamp()))

    assert backend.info(NAME).modified == when
    assert [info.modified for info in backend.list()] == [when]


def test_a_directory_refuses_a_blob_and_a_folder_of_the_same_name(tmp_path):
    backend = DirectoryBackend(tmp_path)
    backend.put("a/b", b"blob")
    backend.put("x/y/z", b"blob")

    for name in ("a/b/c", "x/y"):
        for overwrite in (False, True):
            with pytest.raises(BackendError, match="share a name"):
                backend.put(name, b"data", overwrite=overwrite)
    with pytest.raises(BlobNotFound):
        backend.get("x/y")
    assert backend.delete("x/y") is False
    assert [info.name for info in backend.list()] == ["a/b", "x/y/z"]


def test_a_missing_directory_is_never_created_so_an_unmounted_share_stays_empty(tmp_path):
    backend = DirectoryBackend(tmp_path / "new" / "vault")
    assert list(backend.list()) == []
    with pytest.raises(BlobNotFound):
        backend.get(NAME)

    with pytest.raises(BackendError, match="does not exist"):
        backend.put(NAME, b"x")

    assert not (tmp_path / "new").exists()


def test_a_directory_root_that_is_a_file_is_an_error(tmp_path):
    (tmp_path / "vault").write_bytes(b"")
    with pytest.raises(BackendError, match="does not exist"):
        DirectoryBackend(tmp_path / "vault").put(NAME, b"x")


def test_a_directory_writes_nothing_outside_its_root_for_hostile_names(tmp_path):
    root = tmp_path / "vault"
    root.mkdir()
    backend = DirectoryBackend(root / "inner")
    (root / "inner").mkdir()
    for name in HOSTILE_NAMES:
        with pytest.raises(ValueError):
            backend.put(name, b"x")
    assert [path.name for path in tmp_path.rglob("*")] == ["vault", "inner"]


# -- Azure Blob Storage (Azurite)


def test_azure_archive_tier_refuses_reads_until_the_blob_is_back_online(azure_backend):
    azure_backend.put(NAME, b"cold data")

    azure_backend.set_tier(NAME, COOL)
    assert azure_backend.info(NAME).tier == COOL
    assert azure_backend.get(NAME) == b"cold data"

    azure_backend.set_tier(NAME, ARCHIVE)
    assert azure_backend.info(NAME).tier == ARCHIVE
    assert [(info.tier, info.rehydrating) for info in azure_backend.list()] == [(ARCHIVE, False)]
    with pytest.raises(BlobArchived, match="Archive tier") as caught:
        azure_backend.get(NAME)
    assert (caught.value.name, caught.value.rehydrating) == (NAME, False)
    with pytest.raises(BlobArchived):
        azure_backend.get_range(NAME, 0, 4)

    azure_backend.set_tier(NAME, HOT, rehydrate_priority="High")  # Azurite rehydrates at once
    assert azure_backend.info(NAME).tier == HOT
    assert azure_backend.get(NAME) == b"cold data"


def test_azure_list_pages_through_the_container(azurite, azure_backend):
    requests: list[str] = []
    paged = AzureBlobBackend.from_connection_string(
        azurite.connection_string(),
        azure_backend.container,
        page_size=3,
        raw_response_hook=lambda response: requests.append(response.http_request.url),
    )
    names = [f"chunks/{i:02d}" for i in range(10)]
    for name in names:
        azure_backend.put(name, b"x")

    assert [info.name for info in paged.list("chunks/")] == names
    assert sum("comp=list" in url for url in requests) == 4


def test_azure_signs_in_with_an_account_key_or_a_sas_token(azurite, azure_backend):
    with_key = AzureBlobBackend.from_account(azurite.blob_endpoint, azure_backend.container, AZURITE_KEY)
    assert with_key.put(NAME, b"by key") is True

    sas = generate_container_sas(
        AZURITE_ACCOUNT,
        azure_backend.container,
        account_key=AZURITE_KEY,
        permission=ContainerSasPermissions(read=True, write=True, list=True, delete=True, tag=True),
        expiry=_now() + dt.timedelta(hours=1),
    )
    with_sas = AzureBlobBackend.from_account(azurite.blob_endpoint, azure_backend.container, sas)
    assert with_sas.get(NAME) == b"by key"
    assert [info.name for info in with_sas.list()] == [NAME]
    assert with_sas.description == f"Azure Blob {AZURITE_ACCOUNT}/{azure_backend.container}"


def test_azure_bad_sas_token_is_an_authorization_error_that_hides_the_token(azurite, azure_backend):
    signature = "c2VjcmV0LXNpZ25hdHVyZS1ub3QtdmFsaWQ%3D"
    bad = AzureBlobBackend.from_account(
        azurite.blob_endpoint, azure_backend.container, f"sv=2021-08-06&sr=c&sp=r&se=2099-01-01&sig={signature}"
    )
    with pytest.raises(BackendError, match="authorization failed") as caught:
        bad.get(NAME)
    assert signature not in str(caught.value)


def test_azure_wrong_account_key_is_an_authorization_error_without_the_key(azurite, azure_backend):
    wrong_key = base64.b64encode(b"not the key of this account, but the same length as one").decode()
    backend = AzureBlobBackend.from_connection_string(
        _connection_string(azurite.port, wrong_key), azure_backend.container, retry_total=0
    )

    for call in (lambda: backend.put(NAME, b"x"), lambda: backend.get(NAME), lambda: list(backend.list())):
        with pytest.raises(BackendError) as caught:
            call()
        message = str(caught.value)
        assert not isinstance(caught.value, BlobNotFound)
        assert "authorization failed" in message
        assert f"{AZURITE_ACCOUNT}/{azure_backend.container}" in message
        assert wrong_key not in message and AZURITE_KEY not in message
        assert "\n" not in message


def test_azure_unreachable_endpoint_fails_fast_with_a_one_line_error():
    port = free_port()  # nothing listens there
    backend = AzureBlobBackend.from_connection_string(
        _connection_string(port), "vault", retry_total=0, connection_timeout=2, read_timeout=2
    )

    started = time.monotonic()
    for call in (lambda: backend.get(NAME), lambda: backend.put(NAME, b"x"), lambda: list(backend.list())):
        with pytest.raises(BackendError) as caught:
            call()
        message = str(caught.value)
        assert f"Azure Blob {AZURITE_ACCOUNT}/vault: " in message
        assert f"cannot reach 127.0.0.1:{port}" in message
        assert "refused" in message.lower()
        assert "\n" not in message and AZURITE_KEY not in message
    assert time.monotonic() - started < 5


def test_azure_missing_container_is_an_error_not_a_missing_blob(azurite):
    backend = AzureBlobBackend.from_connection_string(azurite.connection_string(), "no-such-container")

    for call in (lambda: backend.get(NAME), lambda: backend.exists(NAME), lambda: backend.put(NAME, b"x")):
        with pytest.raises(BackendError, match="container 'no-such-container' does not exist") as caught:
            call()
        assert not isinstance(caught.value, BlobNotFound)
    assert backend.ensure_container() is True
    assert backend.ensure_container() is False
    assert backend.put(NAME, b"x") is True


def test_azure_malformed_connection_string_error_does_not_quote_it():
    secret = "AccountKey=" + base64.b64encode(b"s" * 32).decode()
    with pytest.raises(BackendError, match="invalid Azure Storage connection string") as caught:
        AzureBlobBackend.from_connection_string(secret, "vault")
    assert secret not in str(caught.value)


def test_default_credential_is_built_on_first_use_and_shared():
    credential = default_credential()
    assert credential is default_credential()
    assert hasattr(credential, "get_token")
