"""The product's only gateway to vCenter: everything that imports pyVmomi lives in this package.

Callers get plain frozen dataclasses and the exceptions below, never pyVmomi objects or faults, so
the rest of the code base (and its tests) does not depend on pyVmomi's types.

Habits that matter against vCenter (and its simulator, see tools/simulator.py):
- read properties in bulk through the PropertyCollector (RetrievePropertiesEx, paged with
  ContinueRetrievePropertiesEx), never attribute by attribute on managed objects: one round trip
  per page instead of several per VM, and unset properties are simply omitted (reading an unset
  property through a pyVmomi accessor makes vcsim 0.24.2 drop the connection);
- the bulk inventory reads parse the SOAP response with ElementTree instead of pyVmomi's
  deserializer: pyVmomi builds a Python object per device and field (about 2 ms per VM for
  config.hardware.device), which made 10,000 VMs take 20-25 s; ElementTree takes about a fifth;
- wait for tasks by reading only info.state/info.error/info.result: reading the whole task.info
  of RemoveSnapshot_Task fails in pyVmomi 9 against vcsim 0.24.2 (info.entity is a snapshot);
- TLS is checked by this package, never by pyVmomi's defaults: pyVmomi skips certificate checks for
  127.0.0.1/localhost, and its thumbprint is only a fallback after CA verification fails;
- log in once per connect(): a wrong password is never retried (vCenter locks accounts);
- whole disks are read by DatastoreFile through http.client rather than urllib3: kept-alive
  connections, and each 4 MiB range read straight into the caller's (page-aligned) buffer.

Modules (callers import from the package, `from inventory import vcenter as vsphere`, never from these):
  errors       VCenterError and its subclasses; http_failure (an HTTP status as one of them)
  connection   TLS (pinning, CA checks), Endpoint, connect(), Connection, fetch_server_identity(), about()
  soap         PropertyCollector reads: small ones through pyVmomi, bulk ones as raw streamed SOAP
  vmomi        build(), managed(): pyVmomi objects typed as their stubs say
  tasks        waiting for tasks
  names        escape_name / unescape_name (vCenter's %2f %5c %25)
  inventory    the inventory dataclasses, fetch_inventory / fetch_vms / fetch_folders / list_vms
  watch        ChangeWatcher (WaitForUpdatesEx)
  vms          folders and VMs created, renamed, moved, destroyed; disks added; power; change tracking
  vmconfig     vm_config(): a VM's configuration as a JSON-able document
  snapshots    snapshots, their disks and change ids, QueryChangedDiskAreas
  datastore    datastore files through /folder: DatastoreFile (ranged reads, write), read_datastore_file
  vmdk         VMDK descriptors
  restore      what a full-VM restore needs: create_vm_from_config
  layouts      disk layouts and their differences (what must not have changed for an overwrite restore)
  guest        wait_for_guest(): VMware Tools running, a heartbeat and an IP address after power-on
  instant      instant recovery: NFS datastores mounted and unmounted, a VM registered from its .vmx,
               powered on, its disks moved (storage vMotion), unregistered; missing privileges
  tags         vSphere tags over vCenter's REST API: tag_vm (category and tag created if missing),
               vms_with_tag
"""

from __future__ import annotations

from .connection import (
    CONNECT_TIMEOUT,
    READ_TIMEOUT,
    AboutInfo,
    Connection,
    Endpoint,
    MiB,
    ServerIdentity,
    about,
    connect,
    fetch_server_identity,
    normalize_thumbprint,
)
from .datastore import CHUNK_SIZE, DatastoreFile, Upload, read_buffer, read_datastore_file
from .errors import (
    CREDENTIALS_REJECTED,
    SESSION_ENDED,
    AlreadyExists,
    BadCredentials,
    Cancelled,
    CertificateNotTrusted,
    ChangeTrackingUnavailable,
    ConfigNotRestorable,
    DatastoreUnreachable,
    InUse,
    InvalidName,
    NotAVCenter,
    NotFound,
    QuiesceFailed,
    ThumbprintMismatch,
    Unreachable,
    VCenterError,
)
from .guest import GuestReport, wait_for_guest
from .instant import (
    InstantDatastore,
    LeftoverVm,
    MissingPrivileges,
    NasDatastore,
    PoweredOn,
    RegisteredVm,
    Relocated,
    datastore_exists,
    instant_datastores,
    missing_privileges,
    mount_nas_datastore,
    power_off_and_unregister,
    power_on,
    register_vm,
    relocate_disks,
    unmount_datastore,
    vm_with_instance_uuid,
)
from .inventory import (
    ClusterInfo,
    DatacenterInfo,
    DatastoreInfo,
    DiskInfo,
    FolderInfo,
    HostInfo,
    Inventory,
    NetworkInfo,
    ResourcePoolInfo,
    VmInfo,
    fetch_folders,
    fetch_inventory,
    fetch_vms,
    list_vms,
)
from .layouts import DiskPlace, disk_layout, layout_differences, layout_from_config
from .names import MAX_NAME_LENGTH, check_vm_name, escape_name, unescape_name
from .restore import CreatedDisk, VmCreated, create_vm_from_config, with_nic_networks
from .snapshots import (
    SnapshotInfo,
    create_snapshot,
    list_snapshots,
    query_changed_areas,
    remove_snapshot,
    snapshot_change_ids,
    snapshot_disks,
)
from .soap import PAGE_SIZE
from .tags import tag_vm, vms_with_tag
from .vmconfig import CONFIG_SCHEMA, vm_config
from .vmdk import VmdkDescriptor, VmdkExtent, parse_vmdk_descriptor, read_vmdk_descriptor
from .vms import (
    VmSpec,
    add_disk,
    create_folder,
    create_vm,
    destroy_vm,
    enable_change_tracking,
    move_vm,
    power_off,
    power_state,
    rename_vm,
    resize_disk,
)
from .watch import WAIT_SLICE, ChangeSet, ChangeWatcher

__all__ = [
    # connection
    "CONNECT_TIMEOUT",
    "READ_TIMEOUT",
    "MiB",
    "AboutInfo",
    "Connection",
    "Endpoint",
    "ServerIdentity",
    "about",
    "connect",
    "fetch_server_identity",
    "normalize_thumbprint",
    # errors
    "CREDENTIALS_REJECTED",
    "SESSION_ENDED",
    "AlreadyExists",
    "BadCredentials",
    "Cancelled",
    "CertificateNotTrusted",
    "ChangeTrackingUnavailable",
    "ConfigNotRestorable",
    "DatastoreUnreachable",
    "InUse",
    "InvalidName",
    "NotAVCenter",
    "NotFound",
    "QuiesceFailed",
    "ThumbprintMismatch",
    "Unreachable",
    "VCenterError",
    # inventory
    "PAGE_SIZE",
    "ClusterInfo",
    "DatacenterInfo",
    "DatastoreInfo",
    "DiskInfo",
    "FolderInfo",
    "HostInfo",
    "Inventory",
    "NetworkInfo",
    "ResourcePoolInfo",
    "VmInfo",
    "fetch_folders",
    "fetch_inventory",
    "fetch_vms",
    "list_vms",
    "MAX_NAME_LENGTH",
    "check_vm_name",
    "escape_name",
    "unescape_name",
    # live changes
    "WAIT_SLICE",
    "ChangeSet",
    "ChangeWatcher",
    # changes to the inventory
    "VmSpec",
    "create_folder",
    "create_vm",
    "destroy_vm",
    "enable_change_tracking",
    "move_vm",
    "rename_vm",
    "add_disk",
    "resize_disk",
    "power_off",
    "power_state",
    # configuration, snapshots, change tracking
    "CONFIG_SCHEMA",
    "vm_config",
    "SnapshotInfo",
    "create_snapshot",
    "list_snapshots",
    "query_changed_areas",
    "remove_snapshot",
    "snapshot_change_ids",
    "snapshot_disks",
    # datastore files and VMDK descriptors
    "CHUNK_SIZE",
    "DatastoreFile",
    "Upload",
    "read_buffer",
    "read_datastore_file",
    "VmdkDescriptor",
    "VmdkExtent",
    "parse_vmdk_descriptor",
    "read_vmdk_descriptor",
    # full-VM restores
    "CreatedDisk",
    "DiskPlace",
    "VmCreated",
    "create_vm_from_config",
    "with_nic_networks",
    "disk_layout",
    "layout_differences",
    "layout_from_config",
    # the guest after power-on
    "GuestReport",
    "wait_for_guest",
    # instant recovery
    "InstantDatastore",
    "LeftoverVm",
    "MissingPrivileges",
    "NasDatastore",
    "PoweredOn",
    "RegisteredVm",
    "Relocated",
    "datastore_exists",
    "instant_datastores",
    "missing_privileges",
    "mount_nas_datastore",
    "power_off_and_unregister",
    "power_on",
    "register_vm",
    "relocate_disks",
    "unmount_datastore",
    "vm_with_instance_uuid",
    # vSphere tags
    "tag_vm",
    "vms_with_tag",
]
