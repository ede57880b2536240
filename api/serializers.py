"""What the API returns and accepts. Read-only representations of the models, written out field by
field so nothing secret (a vCenter's password, a token) can appear by accident; query-parameter
serializers that validate filters (a bad value is a 400 with the field's error, never a 500)."""

from __future__ import annotations

from typing import Any, cast

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from inventory.models import VCenter, VirtualDisk, VirtualMachine
from inventory.queries import PROTECTION_FILTERS, SORTS
from jobs.models import JobRun
from protection.actions import POLICY_FIELDS
from protection.models import Policy, ProtectionGroup
from recovery.forms import RestoreVmForm
from vault.models import RecoveryPoint, RecoveryPointDisk

MAX_ID = 2**63 - 1  # larger ids cannot exist (bigint); refuse them before they reach the database


def printable(text: str | None) -> str | None:
    """Names from ext/XFS that are not UTF-8 carry lone surrogates (see recovery.filesystems), which
    JSON cannot encode: show them with U+FFFD instead."""
    if text is None:
        return None
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


# References to other objects ------------------------------------------------------------------------


class NamedRef(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(read_only=True)


class FolderRef(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    path = serializers.CharField(read_only=True)


# Inventory ------------------------------------------------------------------------------------------


class VCenterSerializer(serializers.ModelSerializer):
    insecure = serializers.BooleanField(read_only=True, help_text="The server's identity is not verified at all")
    vm_count = serializers.IntegerField(read_only=True, help_text="VMs present in vCenter (removed ones not counted)")

    class Meta:
        model = VCenter
        # Never the password: it is write-only on the pages and absent here.
        fields = [
            "id",
            "name",
            "host",
            "port",
            "protocol",
            "username",
            "verify_tls",
            "thumbprint",
            "insecure",
            "is_simulator",
            "instance_uuid",
            "version",
            "last_sync",
            "last_sync_error",
            "vm_count",
        ]


# A disk as vCenter describes it; a recovery point's disk records the same four fields.
DISK_IDENTITY = ["key", "label", "capacity_bytes", "file_name"]


class VirtualDiskSerializer(serializers.ModelSerializer):
    datastore = serializers.CharField(source="datastore.name", read_only=True, allow_null=True, default=None)
    protectable = serializers.BooleanField(read_only=True)

    class Meta:
        model = VirtualDisk
        fields = [
            *DISK_IDENTITY,
            "datastore",
            "thin",
            "disk_mode",
            "backing",
            "protectable",
            "not_protectable_reason",
        ]


class VirtualMachineSerializer(serializers.ModelSerializer):
    vcenter = NamedRef(read_only=True)
    folder = FolderRef(read_only=True, allow_null=True)
    protection_group = NamedRef(read_only=True, allow_null=True)

    class Meta:
        model = VirtualMachine
        fields = [
            "id",
            "name",
            "path",
            "vcenter",
            "folder",
            "instance_uuid",
            "power_state",
            "guest_name",
            "num_cpu",
            "memory_mb",
            "cbt_enabled",
            "is_template",
            "protection_group",
            "do_not_protect",
            "first_seen",
            "last_seen",
            "removed_at",
        ]


class VirtualMachineDetailSerializer(VirtualMachineSerializer):
    datacenter = NamedRef(read_only=True, allow_null=True)
    host = NamedRef(read_only=True, allow_null=True)
    resource_pool = NamedRef(read_only=True, allow_null=True)
    disks = VirtualDiskSerializer(many=True, read_only=True)

    class Meta(VirtualMachineSerializer.Meta):
        fields = [
            *VirtualMachineSerializer.Meta.fields,
            "moref",
            "bios_uuid",
            "guest_id",
            "snapshot_count",
            "datacenter",
            "host",
            "resource_pool",
            "disks",
        ]


class VMFilterSerializer(serializers.Serializer):
    """The filters of the VM list page (inventory.queries.vm_queryset)."""

    search = serializers.CharField(required=False, help_text="Part of the name or path, or the exact instance UUID")
    vcenter = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID, help_text="vCenter id")
    folder = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_ID, help_text="Folder id: VMs in it and in all folders below"
    )
    folder_path = serializers.CharField(required=False, help_text='Inventory path, e.g. "DC/Prod": it and below')
    power_state = serializers.ChoiceField(required=False, choices=VirtualMachine.PowerState.choices)
    protection = serializers.ChoiceField(
        required=False,
        choices=[*PROTECTION_FILTERS, "removed"],
        help_text="protected: in a group; unprotected: in none (templates and do-not-protect VMs left out); "
        "do_not_protect: marked never to protect; removed: deleted in vCenter (their points are kept)",
    )
    include_removed = serializers.BooleanField(required=False, default=False, help_text="Also VMs deleted in vCenter")
    sort = serializers.ChoiceField(required=False, choices=list(SORTS), default="name")


# Protection groups ----------------------------------------------------------------------------------


class PolicySerializer(serializers.ModelSerializer):
    schedule_description = serializers.SerializerMethodField()

    class Meta:
        model = Policy
        fields = [*POLICY_FIELDS, "schedule_description"]

    def get_schedule_description(self, policy: Policy) -> str:
        return policy.parsed_schedule().describe()


class ProtectionGroupSerializer(serializers.ModelSerializer):
    policy = PolicySerializer(read_only=True)
    member_count = serializers.IntegerField(read_only=True, help_text="VMs the group covers now")
    next_run = serializers.SerializerMethodField(help_text="Next scheduled slot; null while paused")

    class Meta:
        model = ProtectionGroup
        fields = ["id", "name", "description", "paused", "member_count", "next_run", "policy", "created", "updated"]

    @extend_schema_field(OpenApiTypes.DATETIME)
    def get_next_run(self, group: ProtectionGroup) -> Any:
        policy = getattr(group, "policy", None)
        if group.paused or policy is None:
            return None
        slot = policy.parsed_schedule().next_slot(timezone.now())
        return serializers.DateTimeField().to_representation(slot) if slot else None


class ExcludedDiskSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    vm = NamedRef(read_only=True)
    key = serializers.IntegerField(read_only=True)
    # The stubs see this declared field as Field.label; DRF's metaclass takes it off the class.
    label = serializers.CharField(read_only=True)  # type: ignore[assignment]


class ProtectionGroupDetailSerializer(ProtectionGroupSerializer):
    folders = FolderRef(many=True, read_only=True, help_text="Every VM below these folders is covered")
    vms = NamedRef(many=True, read_only=True, help_text="VMs chosen one by one")
    excluded_vms = NamedRef(many=True, read_only=True)
    excluded_disks = ExcludedDiskSerializer(many=True, read_only=True)
    members = serializers.SerializerMethodField(help_text="The VMs the group covers now")

    class Meta(ProtectionGroupSerializer.Meta):
        fields = [*ProtectionGroupSerializer.Meta.fields, "folders", "vms", "excluded_vms", "excluded_disks", "members"]

    @extend_schema_field(NamedRef(many=True))
    def get_members(self, group: ProtectionGroup) -> list[dict[str, Any]]:
        members = group.members.filter(removed_at__isnull=True).order_by("name")
        # many=True makes a ListSerializer, whose data is a list (the stubs know only Serializer.data)
        return cast(list[dict[str, Any]], NamedRef(members, many=True).data)


# Jobs -----------------------------------------------------------------------------------------------


class ProgressSerializer(serializers.Serializer):
    done = serializers.IntegerField(source="progress_done", read_only=True)
    total = serializers.IntegerField(source="progress_total", read_only=True, allow_null=True)
    unit = serializers.CharField(source="progress_unit", read_only=True)
    percent = serializers.IntegerField(read_only=True, allow_null=True)
    rate = serializers.FloatField(read_only=True, allow_null=True, help_text="units per second")
    eta_seconds = serializers.SerializerMethodField()

    def get_eta_seconds(self, run: JobRun) -> int | None:
        eta = run.eta
        return int(eta.total_seconds()) if eta is not None else None


class JobRunSerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username", read_only=True, allow_null=True, default=None)
    progress = ProgressSerializer(source="*", read_only=True)
    is_final = serializers.BooleanField(read_only=True)

    class Meta:
        model = JobRun
        fields = [
            "id",
            "kind",
            "title",
            "queue",
            "status",
            "is_final",
            "target_type",
            "target_id",
            "target_label",
            "created",
            "started",
            "finished",
            "created_by",
            "progress",
            "cancel_requested",
            "error",
        ]


class LogLineSerializer(serializers.Serializer):
    t = serializers.CharField(read_only=True, help_text="ISO 8601 time")
    level = serializers.CharField(read_only=True)
    msg = serializers.CharField(read_only=True)


class JobRunDetailSerializer(JobRunSerializer):
    log = LogLineSerializer(many=True, read_only=True)
    params = serializers.JSONField(read_only=True)
    result = serializers.JSONField(read_only=True)
    traceback = serializers.SerializerMethodField(help_text="Only for users who may cancel jobs, as on the page")

    class Meta(JobRunSerializer.Meta):
        fields = [*JobRunSerializer.Meta.fields, "params", "result", "log", "traceback"]

    def get_traceback(self, run: JobRun) -> str | None:
        request = self.context.get("request")
        if request is not None and request.user.has_perm("jobs.cancel_jobrun"):
            return run.traceback
        return None


class JobFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(required=False, choices=JobRun.Status.choices)
    kind = serializers.CharField(required=False, max_length=64, help_text='e.g. "protection.backup"')


# Recovery points ------------------------------------------------------------------------------------


class RecoveryPointDiskSerializer(serializers.ModelSerializer):
    class Meta:
        model = RecoveryPointDisk
        fields = [
            *DISK_IDENTITY,
            "read_path",
            "read_reason",
            "bytes_read",
            "new_bytes",
            "chunks",
            "new_chunks",
            "zero_chunks",
        ]


class PointArchiveSerializer(serializers.Serializer):
    """The cached archive state of a point's vault chunks (vault.archive): reading it costs nothing."""

    archived_chunks = serializers.IntegerField(
        read_only=True, allow_null=True, help_text="In the Archive tier (null: some are, not counted yet)"
    )
    archived_bytes = serializers.IntegerField(read_only=True)
    rehydrating_chunks = serializers.IntegerField(read_only=True)
    rehydration_priority = serializers.CharField(read_only=True, help_text="Of the rehydration asked for, or empty")
    checked_at = serializers.DateTimeField(source="archive_checked_at", read_only=True, allow_null=True)


class RecoveryPointSerializer(serializers.ModelSerializer):
    vm = NamedRef(read_only=True)
    group = NamedRef(read_only=True, allow_null=True)
    locked = serializers.SerializerMethodField(help_text="Under a retention lock now (see locked_until)")
    archive = PointArchiveSerializer(source="*", read_only=True)

    class Meta:
        model = RecoveryPoint
        fields = [
            "id",
            "vm",
            "group",
            "job",
            "created",
            "completed",
            "consistency",
            "consistency_note",
            "logical_bytes",
            "new_bytes",
            "local",
            "vault_status",
            "vault_at",
            "vault_tier",
            "verified_at",
            "vault_verified_at",
            "damaged",
            "locked",
            "locked_until",
            "archive",
        ]

    def get_locked(self, point: RecoveryPoint) -> bool:
        return point.is_locked(timezone.now())


class RecoveryPointDetailSerializer(RecoveryPointSerializer):
    disks = RecoveryPointDiskSerializer(many=True, read_only=True)
    damage = serializers.JSONField(read_only=True)

    class Meta(RecoveryPointSerializer.Meta):
        fields = [
            *RecoveryPointSerializer.Meta.fields,
            "read_bytes",
            "duration_seconds",
            "vault_bytes",
            "damage",
            "disks",
        ]


class PointFilterSerializer(serializers.Serializer):
    vm = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID, help_text="VM id")
    since = serializers.DateTimeField(required=False, help_text="Points taken at or after this time")
    until = serializers.DateTimeField(required=False, help_text="Points taken at or before this time")


class VolumeSerializer(serializers.Serializer):
    index = serializers.IntegerField(read_only=True, help_text="The `volume` parameter of files and download")
    offset = serializers.IntegerField(read_only=True)
    size = serializers.IntegerField(read_only=True)
    partition_type = serializers.CharField(read_only=True)
    name = serializers.CharField(read_only=True, allow_null=True)
    # The stubs see this declared field as Field.label; DRF's metaclass takes it off the class.
    label = serializers.CharField(read_only=True, allow_null=True)  # type: ignore[assignment]
    fs_type = serializers.CharField(read_only=True, allow_null=True)
    browsable = serializers.BooleanField(read_only=True)
    reason = serializers.CharField(read_only=True, help_text="Why it cannot be browsed; empty when it can")


class DiskVolumesSerializer(serializers.Serializer):
    """One disk of a point (a `browse.DiskView`) and the volumes on it."""

    disk = serializers.IntegerField(source="disk.key", read_only=True, help_text="The `disk` parameter")
    # The stubs see this declared field as Field.label; DRF's metaclass takes it off the class.
    label = serializers.CharField(source="disk.label", read_only=True)  # type: ignore[assignment]
    capacity_bytes = serializers.IntegerField(source="disk.capacity_bytes", read_only=True)
    scheme = serializers.CharField(source="layout.scheme", read_only=True, allow_null=True, default=None)
    volumes = VolumeSerializer(source="layout.volumes", many=True, read_only=True, default=list)
    error = serializers.CharField(read_only=True, help_text="Why the disk cannot be read; empty when it can")


class EntrySerializer(serializers.Serializer):
    """A file, folder or symbolic link (a `recovery.filesystems.Entry`)."""

    name = serializers.SerializerMethodField()
    path = serializers.SerializerMethodField()
    is_dir = serializers.BooleanField(read_only=True)
    size = serializers.IntegerField(read_only=True, help_text="Bytes; 0 for folders and links")
    modified = serializers.DateTimeField(read_only=True, allow_null=True)
    created = serializers.DateTimeField(read_only=True, allow_null=True)
    owner = serializers.CharField(read_only=True, allow_null=True, help_text='"S-1-5-18" on NTFS, "uid 1000" on ext')
    owner_name = serializers.CharField(read_only=True, allow_null=True, help_text="For well-known owners")
    is_symlink = serializers.BooleanField(read_only=True)
    symlink_target = serializers.SerializerMethodField()
    hidden = serializers.BooleanField(read_only=True)

    def get_name(self, entry: Any) -> str:
        return printable(entry.name) or ""

    def get_path(self, entry: Any) -> str:
        return printable(entry.path) or "/"

    def get_symlink_target(self, entry: Any) -> str | None:
        return printable(entry.symlink_target)


class FolderQuerySerializer(serializers.Serializer):
    disk = serializers.IntegerField(min_value=0, max_value=MAX_ID, help_text="Disk key, from volumes")
    volume = serializers.IntegerField(min_value=1, max_value=10_000, help_text="Volume index, from volumes")
    path = serializers.CharField(required=False, default="/", trim_whitespace=False, help_text='e.g. "/Users/alice"')


class FileQuerySerializer(FolderQuerySerializer):
    path = serializers.CharField(trim_whitespace=False, help_text='e.g. "/Users/alice/report.xlsx"')


# Starting work --------------------------------------------------------------------------------------


class BackupRequestSerializer(serializers.Serializer):
    vm = serializers.PrimaryKeyRelatedField(
        queryset=VirtualMachine.objects.select_related("protection_group__policy"),
        required=False,
        help_text="Back up this VM (it must be in a protection group)",
    )
    group = serializers.PrimaryKeyRelatedField(
        queryset=ProtectionGroup.objects.select_related("policy"),
        required=False,
        help_text="Back up every VM of this group",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("vm" in attrs) == ("group" in attrs):
            raise serializers.ValidationError("Give either vm or group.")
        return attrs


class BackupStartedSerializer(serializers.Serializer):
    detail = serializers.CharField()
    jobs = JobRunSerializer(many=True, help_text="Empty when every backup asked for is already queued or running")


@extend_schema_field({"oneOf": [{"type": "integer"}, {"type": "string"}]})
class PlacementRef(serializers.Field):
    """A restore target: its id (GET /api/v1/vms/{id}/placement/) or its inventory path."""


class RestoreVmRequestSerializer(serializers.Serializer):
    """For the schema only: the request is validated by recovery.forms.RestoreVmForm, as on the page."""

    mode = serializers.ChoiceField(choices=RestoreVmForm.MODES, default="new")
    name = serializers.CharField(required=False, max_length=80, help_text="New VM name (mode new)")
    folder = PlacementRef(required=False, help_text="Folder id or path, e.g. DC/vm/Restored (mode new)")
    pool = PlacementRef(required=False, help_text="Resource pool id or path, e.g. DC/host/Cluster/Resources")
    datastore = PlacementRef(required=False, help_text="Datastore id or path, e.g. DC/datastore/ds1 (mode new)")
    host = PlacementRef(required=False, help_text="Host id or path (optional)")
    networks = serializers.DictField(
        child=PlacementRef(allow_null=True),
        required=False,
        help_text="Mode new: {captured network name, adapter label or device key: network id or path, or null "
        "for disconnected}. Adapters not named are disconnected while the original VM exists, else on the "
        "network of the same name. Ids and paths: GET /api/v1/vms/{id}/placement/",
    )
    source_disk = serializers.IntegerField(required=False, help_text="Disk key of the point (mode disk)")
    target_disk = serializers.IntegerField(required=False, help_text="Id of the VM disk to replace (mode disk)")
    confirm = serializers.CharField(
        required=False, help_text="The name of the VM to overwrite, typed exactly (modes overwrite and disk)"
    )


class JobStartedSerializer(serializers.Serializer):
    detail = serializers.CharField()
    job = JobRunSerializer()


# Errors and the caller ------------------------------------------------------------------------------


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()


class TokenInUseSerializer(serializers.Serializer):
    name = serializers.CharField()
    scope = serializers.ChoiceField(choices=["read", "operate"])
    expires = serializers.DateTimeField(allow_null=True)


class MeSerializer(serializers.Serializer):
    username = serializers.CharField()
    roles = serializers.ListField(child=serializers.CharField())
    token = TokenInUseSerializer(
        allow_null=True, help_text="The API token of this request (never its key); null for a browser session"
    )
