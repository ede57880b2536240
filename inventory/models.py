"""The vSphere inventory as last seen, per vCenter connection.

Every object is keyed by (vcenter, moref) except VMs, whose identity is (vcenter, instance UUID):
a VM keeps its row (and so its protection group and recovery points) when it is renamed, moved,
or even re-registered under a new moref.
"""

from __future__ import annotations

from django.db import models

from lib import crypto


class VCenter(models.Model):
    """A vCenter connection. The password is stored encrypted and is never rendered back."""

    class Protocol(models.TextChoices):
        HTTPS = "https", "HTTPS"
        HTTP = "http", "HTTP (simulator only)"

    name = models.CharField(max_length=100, unique=True)
    host = models.CharField(max_length=255)
    port = models.PositiveIntegerField(default=443)
    protocol = models.CharField(max_length=5, choices=Protocol.choices, default=Protocol.HTTPS)
    username = models.CharField(max_length=150)
    password_encrypted = models.TextField(editable=False)
    verify_tls = models.BooleanField(
        default=True, help_text="Off only for a simulator or a lab with a self-signed certificate."
    )
    thumbprint = models.CharField(max_length=95, blank=True, help_text="Pinned SHA-256 certificate thumbprint")
    is_simulator = models.BooleanField(default=False, help_text="The demo simulator that `make run` starts")
    # The vCenter's own identity (about.instanceUuid): part of every VM's identity.
    instance_uuid = models.CharField(max_length=64, blank=True)
    version = models.CharField(max_length=100, blank=True)
    last_sync = models.DateTimeField(null=True, blank=True)
    last_sync_error = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "vCenter"
        permissions = [("sync_vcenter", "Can start an inventory sync")]

    def __str__(self) -> str:
        return self.name

    @property
    def password(self) -> str:
        return crypto.decrypt(self.password_encrypted)

    @password.setter
    def password(self, value: str) -> None:
        self.password_encrypted = crypto.encrypt(value)

    @property
    def insecure(self) -> bool:
        """True when the server's identity is not verified at all."""
        return self.protocol == self.Protocol.HTTP or (not self.verify_tls and not self.thumbprint)


class InventoryObject(models.Model):
    """Fields every inventory object shares: its vCenter and its managed object reference."""

    vcenter = models.ForeignKey(VCenter, on_delete=models.CASCADE, related_name="+")
    moref = models.CharField(max_length=255)
    name = models.CharField(max_length=255)

    class Meta:
        abstract = True
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Datacenter(InventoryObject):
    class Meta(InventoryObject.Meta):
        constraints = [models.UniqueConstraint(fields=["vcenter", "moref"], name="datacenter_moref")]


class Folder(InventoryObject):
    """A VM folder. `path` is the inventory path below the vCenter ("DC/Production/Web"), kept so a
    folder's whole subtree is one indexed prefix query."""

    datacenter = models.ForeignKey(Datacenter, on_delete=models.CASCADE, related_name="folders")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="children")
    path = models.CharField(max_length=2000, db_index=True)
    is_root = models.BooleanField(default=False, help_text="The datacenter's top VM folder")
    removed_at = models.DateTimeField(null=True, blank=True)
    # The path govc gives it ("DC/vm/Prod/Web"; names as vCenter stores them, a "/" in
    # a name as %2f), by which restores name their targets (inventory.placement).
    inventory_path = models.CharField(max_length=2000, blank=True, db_index=True)

    class Meta(InventoryObject.Meta):
        ordering = ["path"]
        constraints = [models.UniqueConstraint(fields=["vcenter", "moref"], name="folder_moref")]

    def __str__(self) -> str:
        return self.path

    def subtree_filter(self, prefix: str = "") -> models.Q:
        """A filter on a related folder (`prefix`, e.g. "folder__") matching this folder and all below it."""
        return models.Q(**{f"{prefix}vcenter_id": self.vcenter_id}) & (
            models.Q(**{f"{prefix}pk": self.pk}) | models.Q(**{f"{prefix}path__startswith": self.path + "/"})
        )


class Cluster(InventoryObject):
    datacenter = models.ForeignKey(Datacenter, on_delete=models.CASCADE, related_name="clusters")
    # The path govc gives it ("DC/host/Cluster"; names as vCenter stores them, a "/" in
    # a name as %2f), by which restores name their targets (inventory.placement).
    inventory_path = models.CharField(max_length=2000, blank=True, db_index=True)

    class Meta(InventoryObject.Meta):
        constraints = [models.UniqueConstraint(fields=["vcenter", "moref"], name="cluster_moref")]


class Host(InventoryObject):
    datacenter = models.ForeignKey(Datacenter, on_delete=models.CASCADE, related_name="hosts")
    cluster = models.ForeignKey(Cluster, null=True, blank=True, on_delete=models.SET_NULL, related_name="hosts")
    connection_state = models.CharField(max_length=32, blank=True)
    # The path govc gives it ("DC/host/Cluster/esx01"; a standalone host "DC/host/esx02/esx02"; names as
    # vCenter stores them, a "/" in a name as %2f), by which restores name their targets (inventory.placement).
    inventory_path = models.CharField(max_length=2000, blank=True, db_index=True)

    class Meta(InventoryObject.Meta):
        constraints = [models.UniqueConstraint(fields=["vcenter", "moref"], name="host_moref")]


class ResourcePool(InventoryObject):
    datacenter = models.ForeignKey(Datacenter, on_delete=models.CASCADE, related_name="resource_pools")
    parent_moref = models.CharField(max_length=255, blank=True)
    owner_moref = models.CharField(max_length=255, blank=True)
    # The path govc gives it ("DC/host/Cluster/Resources/Pool"; names as vCenter stores them, a "/" in
    # a name as %2f), by which restores name their targets (inventory.placement).
    inventory_path = models.CharField(max_length=2000, blank=True, db_index=True)

    class Meta(InventoryObject.Meta):
        constraints = [models.UniqueConstraint(fields=["vcenter", "moref"], name="resourcepool_moref")]


class Datastore(InventoryObject):
    datacenter = models.ForeignKey(Datacenter, on_delete=models.CASCADE, related_name="datastores")
    capacity_bytes = models.BigIntegerField(default=0)
    free_bytes = models.BigIntegerField(default=0)
    type = models.CharField(max_length=32, blank=True)
    url = models.CharField(max_length=1000, blank=True)
    # The path govc gives it ("DC/datastore/ds1"; names as vCenter stores them, a "/" in
    # a name as %2f), by which restores name their targets (inventory.placement).
    inventory_path = models.CharField(max_length=2000, blank=True, db_index=True)

    class Meta(InventoryObject.Meta):
        constraints = [models.UniqueConstraint(fields=["vcenter", "moref"], name="datastore_moref")]


class Network(InventoryObject):
    """A network a VM's adapter can be connected to: a standard port group, a distributed port group
    (not a switch's uplinks) or an opaque network."""

    class Kind(models.TextChoices):
        STANDARD = "Network", "Standard port group"
        DISTRIBUTED = "DistributedVirtualPortgroup", "Distributed port group"
        OPAQUE = "OpaqueNetwork", "Opaque network"

    datacenter = models.ForeignKey(Datacenter, on_delete=models.CASCADE, related_name="networks")
    kind = models.CharField(max_length=40, choices=Kind.choices, default=Kind.STANDARD)
    # The path govc gives it ("DC/network/VM Network"; names as vCenter stores them, a "/" in
    # a name as %2f), by which restores name their targets (inventory.placement).
    inventory_path = models.CharField(max_length=2000, blank=True, db_index=True)

    class Meta(InventoryObject.Meta):
        constraints = [models.UniqueConstraint(fields=["vcenter", "moref"], name="network_moref")]


class VirtualMachine(models.Model):
    """A VM, identified by its vCenter and instance UUID, never by name."""

    class PowerState(models.TextChoices):
        ON = "poweredOn", "On"
        OFF = "poweredOff", "Off"
        SUSPENDED = "suspended", "Suspended"

    vcenter = models.ForeignKey(VCenter, on_delete=models.PROTECT, related_name="vms")
    instance_uuid = models.CharField(max_length=64)
    moref = models.CharField(max_length=255)
    name = models.CharField(max_length=255, db_index=True)
    bios_uuid = models.CharField(max_length=64, blank=True)
    datacenter = models.ForeignKey(Datacenter, null=True, on_delete=models.SET_NULL, related_name="vms")
    folder = models.ForeignKey(Folder, null=True, on_delete=models.SET_NULL, related_name="vms")
    path = models.CharField(max_length=2000, help_text="Inventory path: folder path and name")
    host = models.ForeignKey(Host, null=True, blank=True, on_delete=models.SET_NULL, related_name="vms")
    resource_pool = models.ForeignKey(ResourcePool, null=True, blank=True, on_delete=models.SET_NULL)
    power_state = models.CharField(max_length=16, choices=PowerState.choices, blank=True, db_index=True)
    guest_id = models.CharField(max_length=100, blank=True)
    guest_name = models.CharField(max_length=255, blank=True)
    num_cpu = models.PositiveIntegerField(default=0)
    memory_mb = models.PositiveIntegerField(default=0)
    snapshot_count = models.PositiveIntegerField(default=0)
    cbt_enabled = models.BooleanField(default=False)
    is_template = models.BooleanField(default=False)
    # Protection: which group covers the VM (kept up to date by protection.membership), and the
    # administrator's "never protect this VM" mark, which auto-detect respects.
    protection_group = models.ForeignKey(
        "protection.ProtectionGroup", null=True, blank=True, on_delete=models.SET_NULL, related_name="members"
    )
    do_not_protect = models.BooleanField(default=False)
    # Written by restore_tests (a layer above): when a restore test last proved a point of the VM
    # recoverable, and whether that is longer ago than its group's restore test policy allows.
    proven_at = models.DateTimeField(null=True, blank=True)
    proof_overdue = models.BooleanField(default=False)
    first_seen = models.DateTimeField(auto_now_add=True)
    last_seen = models.DateTimeField(null=True, blank=True)
    removed_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["name", "pk"]
        constraints = [models.UniqueConstraint(fields=["vcenter", "instance_uuid"], name="vm_identity_per_vcenter")]
        indexes = [models.Index(fields=["vcenter", "moref"], name="vm_moref")]

    def __str__(self) -> str:
        return self.name

    @property
    def is_removed(self) -> bool:
        return self.removed_at is not None

    @property
    def protectable_disks(self) -> list[VirtualDisk]:
        return [disk for disk in self.disks.all() if disk.protectable]


class VirtualDisk(models.Model):
    vm = models.ForeignKey(VirtualMachine, on_delete=models.CASCADE, related_name="disks")
    key = models.IntegerField(help_text="Device key, stable for the life of the disk")
    label = models.CharField(max_length=100)
    capacity_bytes = models.BigIntegerField()
    file_name = models.CharField(max_length=1000, help_text='Backing file, e.g. "[ds1] web01/web01.vmdk"')
    datastore = models.ForeignKey(Datastore, null=True, blank=True, on_delete=models.SET_NULL)
    thin = models.BooleanField(null=True)
    disk_mode = models.CharField(max_length=32, blank=True)
    backing = models.CharField(max_length=32, blank=True)
    # Snapshots cannot capture independent disks, and raw device mappings in physical mode are
    # not files we can read: such disks are listed, but not protectable, with the reason.
    not_protectable_reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["vm", "key"]
        constraints = [models.UniqueConstraint(fields=["vm", "key"], name="disk_key_per_vm")]

    def __str__(self) -> str:
        return f"{self.label} of {self.vm}"

    @property
    def protectable(self) -> bool:
        return not self.not_protectable_reason
