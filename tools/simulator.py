"""Build and run the vCenter simulator (tools/vcsim, govmomi's vcsim) for tests and demos.

    python -m tools.simulator --spec inventory.json [--port 8989]

prints the simulator's ready line ({"host", "port", "username", "password", "url", "protocol",
"thumbprint", "cert_file"}) and serves until Ctrl-C. With --tls it serves HTTPS with a self-signed
certificate (kept in the work directory, so a restart presents the same one).
In Python: ``with Simulator.start(spec, workdir=tmp) as sim: ...``.

Needs the Debian packages golang-go and golang-github-vmware-govmomi-dev (builds offline).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any
from urllib.parse import quote

import requests

from tools.diskimages import vmdk_descriptor
from tools.services import child_process_options

REPO = Path(__file__).resolve().parent.parent
SOURCE_DIR = REPO / "tools" / "vcsim"
CACHE_DIR = REPO / ".cache"
BINARY = CACHE_DIR / "bin" / "vcsim"
GOPATH = Path("/usr/share/gocode")
GOVMOMI = GOPATH / "src" / "github.com" / "vmware" / "govmomi"
DEFAULT_PASSWORD = "vcsim-Pa55-7f3k"  # noqa: S105 - the simulator's default login, not a secret


class SimulatorError(RuntimeError):
    """The simulator could not be built or started."""


def build(force: bool = False) -> Path:
    """Build .cache/bin/vcsim unless it is newer than every source file; returns its path."""
    sources = list(SOURCE_DIR.glob("*.go"))
    if not force and BINARY.exists() and all(s.stat().st_mtime <= BINARY.stat().st_mtime for s in sources):
        return BINARY
    go = shutil.which("go")
    if go is None:
        raise SimulatorError("Go is not installed: apt-get install golang-go golang-github-vmware-govmomi-dev")
    if not (GOVMOMI / "simulator").is_dir():
        raise SimulatorError(
            f"govmomi sources not found in {GOVMOMI}: apt-get install golang-github-vmware-govmomi-dev"
        )
    BINARY.parent.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "GO111MODULE": "off",  # GOPATH mode: the Debian package is a GOPATH tree, no module proxy
        "GOPATH": str(GOPATH),
        "GOCACHE": str(CACHE_DIR / "gocache"),
        "GOFLAGS": "",
    }
    tmp = BINARY.with_name(f"{BINARY.name}.{os.getpid()}.tmp")  # concurrent builds never see half a file
    result = subprocess.run(
        [go, "build", "-o", str(tmp), "./tools/vcsim"], cwd=REPO, env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise SimulatorError(f"go build failed:\n{result.stderr}")
    tmp.replace(BINARY)
    return BINARY


def escape_name(name: str) -> str:
    """vCenter's escaping of entity names (as tools/vcsim applies it): % / \\ -> %25 %2f %5c."""
    return name.replace("%", "%25").replace("/", "%2f").replace("\\", "%5c")


def one_vm_spec(vm_name: str, disks_mb: list[int], *, datastore: str = "ds1") -> dict[str, Any]:
    """The smallest inventory that holds one VM: datacenter DC, cluster C with one host, one datastore,
    the VM with these disk sizes (MiB) at the top of the VM folder. Benchmarks and tests start from it."""
    return {
        "datacenters": [
            {
                "name": "DC",
                "clusters": [{"name": "C", "hosts": 1}],
                "datastores": [{"name": datastore}],
                "folders": [{"path": "", "vms": [{"name": vm_name, "disks_mb": disks_mb}]}],
            }
        ]
    }


def default_inventory_spec(vms: list[dict[str, Any]], *, folder: str = "") -> dict[str, Any]:
    """vcsim's own default inventory (its VPX model) with these VMs: datacenter DC0, cluster DC0_C0 of
    three hosts and the standalone host DC0_H0 (each with a root resource pool "Resources"), the
    datastore LocalDS_0 on every host, "VM Network", and the distributed switch DC0_DVS with the port
    group DC0_DVPG0. The VMs run on the cluster, in `folder` below DC0's VM folder."""
    return {
        "datacenters": [
            {
                "name": "DC0",
                "clusters": [{"name": "DC0_C0", "hosts": 3}],
                "hosts": [{"name": "DC0_H0"}],
                "switches": [{"name": "DC0_DVS", "portgroups": ["DC0_DVPG0"]}],
                "datastores": [{"name": "LocalDS_0"}],
                "folders": [{"path": folder, "vms": vms}],
            }
        ]
    }


class Simulator:
    """A running simulator process; stop() (or leaving the with block) ends it."""

    def __init__(
        self, process: subprocess.Popen[bytes], ready: dict[str, Any], manifest: dict[str, Any], workdir: Path
    ) -> None:
        self.process = process
        self.host: str = ready["host"]
        self.port: int = ready["port"]
        self.username: str = ready["username"]
        self.password: str = ready["password"]
        self.url: str = ready["url"]  # "http://127.0.0.1:PORT/sdk" or "https://..."
        self.protocol: str = ready.get("protocol", "http")  # "http" or "https"
        # With TLS: the certificate's SHA-256 as vSphere shows it ("AA:BB:..."), and its PEM file, which
        # a client may trust as its own CA (the certificate is self-signed, for 127.0.0.1/localhost).
        self.thumbprint: str | None = ready.get("thumbprint") or None
        self.cert_file: Path | None = Path(ready["cert_file"]) if ready.get("cert_file") else None
        self.ready = ready
        self.manifest = manifest
        self.workdir = workdir
        self.datastore_root: Path | None = None  # removed by stop() if start() made it
        self._start_kwargs: dict[str, Any] = {}  # what restart() passes to start() again

    @classmethod
    def start(
        cls,
        spec: dict[str, Any],
        *,
        port: int = 0,
        workdir: Path,
        host: str = "127.0.0.1",
        username: str = "user",
        # The simulator's default login, not a secret; distinctive, so a test can tell it leaked.
        password: str = DEFAULT_PASSWORD,
        binary: Path | None = None,
        datastore_dir: Path | None = None,
        timeout: float = 120.0,
        tls: bool = False,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
        extra_users: dict[str, str] | None = None,
    ) -> Simulator:
        """Start the simulator with spec (see tools/vcsim/main.go) and wait until it answers.

        workdir receives spec.json, manifest.json and vcsim.log. Datastores are directories under
        datastore_dir, by default a new directory in /dev/shm: vcsim writes about ten files per VM,
        and 10,000 VMs take ~12 s on tmpfs but 15-60 s on this machine's ext4 disk.

        port=0 picks a free port; a fixed port lets a test restart the "same" vCenter (see restart()).
        tls=True serves HTTPS with a self-signed certificate read from tls_cert/tls_key (default
        workdir/tls-cert.pem and tls-key.pem), created there when missing: the same files give the same
        certificate and thumbprint after a restart.

        extra_users ({login name: password}) may log in besides username, with no permission (so no
        privilege) until one is set through the AuthorizationManager; username is Admin on the root
        folder. "NAME@DOMAIN" logs in as vCenter's principal "DOMAIN\\NAME" (tools/vcsim/privileges.go).
        """
        kwargs = {
            "port": port,
            "workdir": workdir,
            "host": host,
            "username": username,
            "password": password,
            "binary": binary,
            "datastore_dir": datastore_dir,
            "timeout": timeout,
            "tls": tls,
            "tls_cert": tls_cert,
            "tls_key": tls_key,
            "extra_users": extra_users,
        }
        binary = binary or build()
        workdir.mkdir(parents=True, exist_ok=True)
        spec_file, manifest_file = workdir / "spec.json", workdir / "manifest.json"
        spec_file.write_text(json.dumps(spec), encoding="utf-8")
        own_root = datastore_dir is None
        datastore_dir = datastore_dir or _datastore_root(workdir)
        args = [
            str(binary),
            "-listen",
            f"{host}:{port}",
            "-spec",
            str(spec_file),
            "-manifest",
            str(manifest_file),
            "-username",
            username,
            "-password",
            password,
            "-datastore-dir",
            str(datastore_dir),
        ]
        if tls:
            tls_cert, tls_key = tls_cert or workdir / "tls-cert.pem", tls_key or workdir / "tls-key.pem"
            args += ["-tls", "-tls-cert", str(tls_cert), "-tls-key", str(tls_key)]
        for name, secret in (extra_users or {}).items():
            args += ["-extra-user", f"{name}:{secret}"]
        log = open(workdir / "vcsim.log", "ab")  # noqa: SIM115 - the child writes to it until stop()
        try:
            process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                **child_process_options(),
            )
        finally:
            log.close()  # the child has its own copy
        try:
            ready = _read_ready_line(process, timeout, workdir / "vcsim.log")
            sim = cls(process, ready, json.loads(manifest_file.read_text(encoding="utf-8")), workdir)
            sim.datastore_root = datastore_dir if own_root else None
            sim._start_kwargs = {**kwargs, "port": sim.port}
            sim._wait_answering(timeout)
        except BaseException:
            _terminate(process)
            if own_root:
                shutil.rmtree(datastore_dir, ignore_errors=True)
            raise
        return sim

    # ---- inventory ----

    def vms(self) -> list[dict[str, Any]]:
        """The manifest's VMs: datacenter, folder, name, moref, instance_uuid, disks, ..."""
        return list(self.manifest["vms"])

    def vm(self, name: str) -> dict[str, Any]:
        matches = [vm for vm in self.manifest["vms"] if vm["name"] == name]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} VMs named {name!r} in the manifest")
        return matches[0]

    def datastore_dir(self, datacenter: str, datastore: str) -> Path:
        """The local directory backing a datastore."""
        for dc in self.manifest["datacenters"]:
            for ds in dc["datastores"] if dc["name"] == datacenter else []:
                if ds["name"] == datastore:
                    return Path(ds["path"])
        raise KeyError(f"no datastore {datastore!r} in datacenter {datacenter!r}")

    def disk_file(self, vm_name: str, disk_index: int, *, flat: bool = True) -> Path:
        """Local path of a VM disk's -flat.vmdk (or of its descriptor with flat=False)."""
        vm = self.vm(vm_name)
        disk = vm["disks"][disk_index]
        rel = disk["flat_path"] if flat else disk["descriptor_path"]
        return self.datastore_dir(vm["datacenter"], disk["datastore"]) / rel

    # ---- disk images ----

    def upload_disk_image(self, vm_name: str, disk_index: int, image_path: Path) -> None:
        """Put a raw image behind a VM disk through the datastore HTTP API (/folder).

        Writes the image to <disk>-flat.vmdk (zero-padded up to the disk's capacity; a larger image
        is refused) and a monolithicFlat-style descriptor to <disk>.vmdk, as vSphere lays them out.
        """
        vm = self.vm(vm_name)
        disk = vm["disks"][disk_index]
        capacity, size = disk["capacity_bytes"], image_path.stat().st_size
        if size > capacity:
            raise ValueError(
                f"{image_path} is {size} bytes, larger than {vm_name} disk {disk_index} "
                f"({capacity} bytes): give the disk a larger disks_mb entry in the spec"
            )
        with image_path.open("rb") as image:
            self._put(vm, disk, disk["flat_path"], _PaddedReader(image, capacity))
        flat_name = disk["flat_path"].rsplit("/", 1)[-1]
        descriptor = vmdk_descriptor(flat_name, capacity)
        self._put(vm, disk, disk["descriptor_path"], descriptor.encode("utf-8"))

    def write_disk_range(self, vm_name: str, disk_index: int, offset: int, data: bytes) -> None:
        """Write data at offset of a VM disk's -flat.vmdk through the datastore HTTP API, with a
        partial PUT (Content-Range, a simulator extension), so the simulator's change tracking
        records it as a guest write would be.

        The simulator lays a new disk out as vSphere does (a descriptor, and a flat file of the disk's
        full capacity); a disk whose files were replaced by something shorter since is laid out
        again first (locally, so not counted as written).
        """
        vm = self.vm(vm_name)
        disk = vm["disks"][disk_index]
        if offset < 0 or offset + len(data) > disk["capacity_bytes"]:
            raise ValueError(f"{len(data)} bytes at {offset} do not fit in {vm_name} disk {disk_index}")
        if not data:
            return
        self._lay_out_disk(vm, disk)
        content_range = f"bytes {offset}-{offset + len(data) - 1}/{disk['capacity_bytes']}"
        self._put(vm, disk, disk["flat_path"], data, {"Content-Range": content_range})

    def _lay_out_disk(self, vm: dict[str, Any], disk: dict[str, Any]) -> None:
        flat = self.datastore_dir(vm["datacenter"], disk["datastore"]) / disk["flat_path"]
        if not flat.exists() or flat.stat().st_size < disk["capacity_bytes"]:
            with flat.open("ab") as file:  # vcsim makes it empty; ab keeps what is there
                file.truncate(disk["capacity_bytes"])
        descriptor = flat.with_name(disk["descriptor_path"].rsplit("/", 1)[-1])
        if not descriptor.exists() or descriptor.stat().st_size == 0:
            text = vmdk_descriptor(flat.name, disk["capacity_bytes"])
            self._put(vm, disk, disk["descriptor_path"], text.encode("utf-8"))

    def _put(
        self, vm: dict[str, Any], disk: dict[str, Any], rel_path: str, body: Any, headers: dict[str, str] | None = None
    ) -> None:
        # vcsim 0.24.2's /folder handler checks no credentials; vCenter takes a session cookie or
        # basic auth, so send the latter to keep this helper honest.
        resp = requests.put(
            f"{self.protocol}://{self.host}:{self.port}/folder/{quote(rel_path, safe='/')}",
            params={"dcPath": escape_name(vm["datacenter"]), "dsName": disk["datastore"]},
            data=body,
            headers=headers,
            auth=(self.username, self.password),
            timeout=(10, 600),
            verify=self._verify,
        )
        if resp.status_code not in (200, 201, 204):
            raise SimulatorError(f"PUT {rel_path}: HTTP {resp.status_code} {resp.text[:200]}")

    # ---- lifecycle ----

    @property
    def _verify(self) -> str | bool:
        # The certificate is self-signed: trusting it as its own CA verifies it properly.
        return str(self.cert_file) if self.cert_file else True

    def _wait_answering(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        url = f"{self.protocol}://{self.host}:{self.port}/sdk/vimServiceVersions.xml"
        while True:
            try:
                if requests.get(url, timeout=2, verify=self._verify).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise SimulatorError(f"simulator does not answer on {url}")
            time.sleep(0.05)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (the simulator then removes its datastore directories), kill after timeout."""
        _terminate(self.process, timeout)
        if self.datastore_root is not None:  # also after a kill, so /dev/shm is never left full
            shutil.rmtree(self.datastore_root, ignore_errors=True)

    def restart(self, spec: dict[str, Any] | None = None, timeout: float = 30.0) -> None:
        """Stop, then start again on the same port (same credentials, work directory and TLS
        certificate), with spec or the same spec: as a vCenter rebooting. This object then describes
        the new process; VM morefs are assigned anew, instance UUIDs only stay if the spec fixes them.
        """
        spec = spec if spec is not None else json.loads((self.workdir / "spec.json").read_text(encoding="utf-8"))
        self.stop(timeout)
        fresh = Simulator.start(spec, **self._start_kwargs)
        self.__dict__.update(fresh.__dict__)

    def __enter__(self) -> Simulator:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _datastore_root(workdir: Path) -> Path:
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return Path(tempfile.mkdtemp(prefix="vcsim-datastores-", dir=shm))
    root = workdir / "datastores"
    root.mkdir(exist_ok=True)
    return root


def _read_ready_line(process: subprocess.Popen[bytes], timeout: float, log: Path) -> dict[str, Any]:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        readable, _, _ = select.select([process.stdout], [], [], 0.2)
        if readable:
            line = process.stdout.readline()
            if line:
                return json.loads(line)
        if process.poll() is not None:
            tail = log.read_text(encoding="utf-8", errors="replace")[-2000:]
            raise SimulatorError(f"simulator exited with {process.returncode}:\n{tail}")
    raise SimulatorError(f"simulator not ready after {timeout:.0f} s (see {log})")


def _terminate(process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout is not None:
        process.stdout.close()


class _PaddedReader:
    """A file object giving image's bytes, then zeros up to total; len() lets requests send a
    Content-Length, and read() lets it stream instead of loading a 1 GiB image."""

    def __init__(self, image: IO[bytes], total: int) -> None:
        self.image, self.total, self.pos = image, total, 0

    def __len__(self) -> int:
        return self.total - self.pos

    def read(self, size: int = -1) -> bytes:
        size = len(self) if size is None or size < 0 else min(size, len(self))
        data = self.image.read(size)
        data += bytes(size - len(data))  # past the image's end: zeros
        self.pos += len(data)
        return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.simulator", description=__doc__.split("\n")[0])
    parser.add_argument("--build", action="store_true", help="only build the simulator binary, then exit")
    parser.add_argument("--spec", type=Path, help="JSON inventory spec")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--workdir", type=Path, help="for spec, manifest and log (default: temporary)")
    parser.add_argument("--datastore-dir", type=Path, help="parent of the datastore directories")
    parser.add_argument("--username", default="user")
    parser.add_argument("--password", default=DEFAULT_PASSWORD)
    parser.add_argument("--tls", action="store_true", help="serve HTTPS with a self-signed certificate")
    parser.add_argument(
        "--extra-user",
        action="append",
        default=[],
        metavar="NAME:PASSWORD",
        help="another user who may log in, with no permission until one is set (repeatable)",
    )
    args = parser.parse_args(argv)
    if args.build:
        print(build())
        return 0
    if args.spec is None:
        parser.error("--spec is required")

    spec = json.loads(args.spec.read_text(encoding="utf-8"))
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="vcsim-"))
    # Ctrl-C and SIGTERM only set a flag, so the cleanup below is never cut short by an exception.
    # (Ctrl-C in a terminal also reaches the simulator, which then exits 0 by itself.)
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    try:
        with Simulator.start(
            spec,
            port=args.port,
            workdir=workdir,
            username=args.username,
            password=args.password,
            datastore_dir=args.datastore_dir,
            tls=args.tls,
            extra_users={name: secret for name, _, secret in (u.partition(":") for u in args.extra_user)},
        ) as sim:
            print(json.dumps(sim.ready), flush=True)
            print(f"manifest: {workdir / 'manifest.json'}", file=sys.stderr)
            while not stopping.is_set() and sim.process.poll() is None:
                stopping.wait(0.2)
            return 0 if stopping.is_set() or sim.process.returncode == 0 else 1
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
