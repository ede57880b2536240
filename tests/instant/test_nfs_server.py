"""The private nfs-ganesha: NFSv4 only on its own address and port, exports added and removed by
SIGHUP without disturbing the others, a served point's export opened again after its FUSE server
was killed and restarted, and a killed ganesha started again with its exports."""

from __future__ import annotations

import hashlib
import signal
import subprocess
from pathlib import Path

import pytest

from instant.nfs import Export, Ganesha, NfsError, config_text
from tests.instant.conftest import Served, nfs_cat, sha256, start_serving
from tools.services import free_port


def test_its_configuration_is_nfsv4_only_with_pseudo_paths_equal_to_the_local_ones(tmp_path: Path) -> None:
    text = config_text(tmp_path, "127.0.0.1", 20490, [Export(7, Path("/srv/instant/p1"))])
    for line in ("Protocols = 4;", "Bind_addr = 127.0.0.1;", "NFS_Port = 20490;", "Enable_NLM = false;",
                 "Enable_RQUOTA = false;", "Graceless = true;", f"RecoveryRoot = {tmp_path / 'recovery'};",
                 "Export_Id = 7;", "Path = /srv/instant/p1;", "Pseudo = /srv/instant/p1;", "Access_Type = RW;",
                 "Squash = No_Root_Squash;", "SecType = sys;", "FSAL { Name = VFS; }"):  # fmt: skip
        assert line in [row.strip() for row in text.splitlines()], line
    with pytest.raises(NfsError, match="cannot be exported"):
        config_text(tmp_path, "127.0.0.1", 20490, [Export(1, Path("/srv/a b; EXPORT {"))])


def test_exports_come_and_go_without_disturbing_the_others(tmp_path: Path, ganesha: Ganesha) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    for folder in (first, second):
        folder.mkdir()
        (folder / "name.txt").write_text(folder.name)
    kept = ganesha.add(first)
    gone = ganesha.add(second)
    assert nfs_cat(ganesha.url(second, "name.txt")) == b"second"
    ganesha.remove(gone)
    answer = subprocess.run(["nfs-cat", ganesha.url(second, "name.txt")], capture_output=True, timeout=60)
    assert answer.returncode != 0 and b"NFS4ERR_NOENT" in answer.stderr
    assert nfs_cat(ganesha.url(first, "name.txt")) == b"first"
    ganesha.remove(kept)


def test_a_restarted_fuse_server_is_served_again_once_its_export_is_reopened(
    serving: Served, store_dir: Path, images: dict[str, Path], ganesha: Ganesha
) -> None:
    export = ganesha.add(serving.mount)
    url = ganesha.url(serving.mount, "win-01_1-flat.vmdk")
    try:
        serving.process.send_signal(signal.SIGKILL)
        serving.process.wait(30)
        again = start_serving(store_dir, serving.mount, serving.overlay)
        try:
            stale = subprocess.run(["nfs-cat", url], capture_output=True, timeout=60)
            assert stale.returncode != 0 and b"NFS4ERR_SERVERFAULT" in stale.stderr  # the dead mount's root
            ganesha.reopen(export)
            assert hashlib.sha256(nfs_cat(url)).hexdigest() == sha256(images["2001"])
        finally:
            again.stop()
    finally:
        ganesha.remove(export)


def test_a_killed_ganesha_starts_again_with_its_exports(tmp_path: Path) -> None:
    folder = tmp_path / "served"
    folder.mkdir()
    (folder / "f").write_bytes(b"still here")
    server = Ganesha(tmp_path / "ganesha", free_port()).start()
    try:
        server.add(folder)
        assert server.process is not None
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(30)
        server.start()
        assert nfs_cat(server.url(folder, "f")) == b"still here"
    finally:
        server.stop()
