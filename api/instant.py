"""/api/v1/instant-recoveries/: the instant VM recoveries (issue 16) as the command line has them -
list and open them, start one from a point (host by id or inventory path), migrate a running one to
a datastore, stop one. Reading needs instant.view_instantrecovery, starting add_, migrating and
stopping change_ (administrators; auditors read). The actions are instant.actions', audited there;
each queues a job and answers 202 with it, as the restore endpoints do."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from api import serializers as s
from api.permissions import HasPerm
from api.views import BAD_REQUEST, CONFLICT, ERRORS, NOT_FOUND, Conflict
from instant import actions
from instant.models import InstantRecovery
from inventory import placement
from jobs.models import JobRun
from recovery import access

PERMS = {
    "list": "instant.view_instantrecovery",
    "retrieve": "instant.view_instantrecovery",
    "create": "instant.add_instantrecovery",
    "migrate": "instant.change_instantrecovery",
    "stop": "instant.change_instantrecovery",
}


class Target(s.PlacementRef):
    """An id or an inventory path, kept as sent: inventory.placement.resolve reads it."""

    def to_internal_value(self, data: Any) -> int | str:
        if isinstance(data, bool) or not isinstance(data, int | str):
            raise ValidationError("Give an id or an inventory path.")
        return data


class InstantRecoverySerializer(serializers.ModelSerializer):
    source_vm = s.NamedRef(read_only=True, allow_null=True, help_text="The VM the point was taken of")
    point = serializers.UUIDField(source="point_id", read_only=True, allow_null=True, help_text="null once deleted")
    state_display = serializers.CharField(source="get_state_display", read_only=True)
    requested_by: serializers.SlugRelatedField = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    job = serializers.UUIDField(source="job_id", read_only=True, allow_null=True, help_text="The last job")

    class Meta:
        model = InstantRecovery
        fields = [
            "id",
            "vm_name",
            "source_vm",
            "point",
            "point_created",
            "host_name",
            "connect_network",
            "state",
            "state_display",
            "error",
            "datastore_name",
            "target_datastore",
            "started",
            "finished",
            "bytes_read",
            "overlay_bytes",
            "overlay_free_bytes",
            "write_error",
            "restarts",
            "last_restart",
            "restart_reason",
            "requested_by",
            "job",
        ]
        read_only_fields = fields


class StartRequestSerializer(serializers.Serializer):
    point = serializers.UUIDField(help_text="The recovery point to run the VM from")
    name = serializers.CharField(
        required=False,
        default="",
        max_length=80,
        help_text="Default: VM-instant, or the VM's own name when it is gone from vCenter",
    )
    host = Target(
        required=False, help_text="Host id or inventory path, e.g. DC/host/Cluster/esx1 (default: the VM's own)"
    )
    connect_network = serializers.BooleanField(
        default=False, help_text="Connect the network adapters at power-on (default: disconnected)"
    )


class MigrateRequestSerializer(serializers.Serializer):
    datastore = Target(help_text="Datastore id or inventory path, e.g. DC/datastore/ds1")


class InstantStartedSerializer(s.JobStartedSerializer):
    instant_recovery = InstantRecoverySerializer()


def _accepted(run: JobRun | None, recovery: InstantRecovery | None = None) -> Response:
    assert run is not None  # every action queues its job
    body: dict[str, Any] = {"detail": f"{run.title}: queued.", "job": run}
    if recovery is None:
        return Response(s.JobStartedSerializer(body).data, status=status.HTTP_202_ACCEPTED)
    body["instant_recovery"] = recovery
    return Response(InstantStartedSerializer(body).data, status=status.HTTP_202_ACCEPTED)


def _body(serializer_class: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    if not isinstance(request.data, dict):
        raise ValidationError({"non_field_errors": ["Send an object."]})
    body = serializer_class(data=request.data)
    body.is_valid(raise_exception=True)
    return dict(body.validated_data)


@extend_schema_view(
    list=extend_schema(responses={200: InstantRecoverySerializer(many=True), **ERRORS}),
    retrieve=extend_schema(responses={200: InstantRecoverySerializer, **ERRORS, **NOT_FOUND}),
    create=extend_schema(
        request=StartRequestSerializer,
        responses={202: InstantStartedSerializer, **BAD_REQUEST, **ERRORS, **CONFLICT},
    ),
)
class InstantRecoveryViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet
):
    """Instant VM recoveries, newest first: VMs run straight from a recovery point over NFS."""

    serializer_class = InstantRecoverySerializer
    lookup_value_regex = r"[0-9]+"

    def get_permissions(self) -> list[BasePermission]:
        perm = PERMS.get(self.action or "", "instant.change_instantrecovery")
        return [IsAuthenticated(), HasPerm.of(perm)()]

    def get_queryset(self) -> QuerySet[InstantRecovery]:
        return InstantRecovery.objects.select_related("source_vm", "requested_by").order_by("-started", "-pk")

    def get_object(self) -> InstantRecovery:
        pk = self.kwargs["pk"]
        found = self.get_queryset().filter(pk=pk).first() if 0 < int(pk) <= s.MAX_ID else None
        if found is None:
            raise NotFound("No such instant recovery.")
        return found

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Start a VM from a recovery point, served over NFS: 202 with the job that registers and powers it on."""
        body = _body(StartRequestSerializer, request)
        point = access.visible_points(request.user).select_related("vm").filter(pk=body["point"]).first()
        if point is None:
            raise ValidationError({"point": ["No such recovery point, or not visible to you."]})
        host = None
        if body.get("host") not in (None, ""):
            try:
                host = placement.resolve("host", body["host"], placement.candidates("host", point.vm))
            except placement.PlacementError as exc:
                raise ValidationError({"host": [str(exc)]}) from None
        try:
            recovery = actions.start_instant_recovery(
                request.user, point, name=body["name"], host=host, connect_network=body["connect_network"]
            )
        except actions.InstantRefused as exc:
            raise Conflict(str(exc)) from None
        return _accepted(recovery.job, recovery)

    @extend_schema(
        request=MigrateRequestSerializer,
        responses={202: s.JobStartedSerializer, **BAD_REQUEST, **ERRORS, **NOT_FOUND, **CONFLICT},
    )
    @action(detail=True, methods=["post"])
    def migrate(self, request: Request, pk: str) -> Response:
        """Move the running VM's disks to a datastore (storage vMotion), then remove its NFS datastore."""
        recovery = self.get_object()
        body = _body(MigrateRequestSerializer, request)
        if recovery.source_vm is None:
            raise Conflict("The recovered VM's original is no longer in the inventory to place it by.")
        try:
            datastore = placement.resolve(
                "datastore", body["datastore"], placement.candidates("datastore", recovery.source_vm)
            )
        except placement.PlacementError as exc:
            raise ValidationError({"datastore": [str(exc)]}) from None
        try:
            return _accepted(actions.migrate(request.user, recovery, datastore))
        except actions.InstantRefused as exc:
            raise Conflict(str(exc)) from None

    @extend_schema(request=None, responses={202: s.JobStartedSerializer, **ERRORS, **NOT_FOUND, **CONFLICT})
    @action(detail=True, methods=["post"])
    def stop(self, request: Request, pk: str) -> Response:
        """Power the VM off and remove it, its NFS datastore and what the VM wrote."""
        recovery = self.get_object()
        try:
            return _accepted(actions.stop(request.user, recovery))
        except actions.InstantRefused as exc:
            raise Conflict(str(exc)) from None
