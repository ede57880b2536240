"""The JSON API under /api/v1/. Views stay thin: they check the same permissions as the pages, then
call the same query and action functions (inventory.queries, protection.actions, recovery.access,
recovery.browse, recovery.actions), so a backup or a download started here is audited exactly like
one started from a page or the command line."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, cast

from django.contrib.auth.models import User
from django.db.models import Count, Q, QuerySet
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, NotFound, PermissionDenied, ValidationError
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import BaseParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import ApiToken
from accounts.roles import user_roles
from api import serializers as s
from api.permissions import HasPerm, SeesRecoveryPoints
from inventory.models import VCenter, VirtualMachine
from inventory.queries import VmFilter, vm_queryset
from jobs.models import JobRun
from jobs.queries import visible_runs
from protection import actions as protection_actions
from protection.models import ProtectionGroup
from recovery import access, browse
from recovery import actions as recovery_actions
from recovery import filesystems as fs

# The download view streams exactly as the Recovery page does (content type, file name, audit on
# completion); these helpers live with that view.
from recovery.downloads import file_response
from recovery.forms import RestoreVmForm
from vault.models import RecoveryPoint

ERRORS = {
    401: OpenApiResponse(s.ErrorSerializer, description="No token, or a wrong one"),
    403: OpenApiResponse(s.ErrorSerializer, description="The user's role does not allow it"),
}
NOT_FOUND = {404: OpenApiResponse(s.ErrorSerializer, description="No such object, or not visible to the user")}
BAD_REQUEST = {400: OpenApiResponse(OpenApiTypes.OBJECT, description="Field errors: {field: [messages]}")}
CONFLICT = {409: OpenApiResponse(s.ErrorSerializer, description="It cannot be done now; detail says why")}


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "This cannot be done now."
    default_code = "conflict"


def _query(serializer_class: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    """Validated query parameters; a bad value is a 400 naming the parameter."""
    query = serializer_class(data=request.query_params)
    query.is_valid(raise_exception=True)
    return query.validated_data


def _form_errors(form: Any) -> dict[str, list[str]]:
    return {("non_field_errors" if name == "__all__" else name): list(errors) for name, errors in form.errors.items()}


class ListAndDetailViewSet(viewsets.ReadOnlyModelViewSet):
    """Summaries in the list, one object in more detail: `detail_serializer_class` answers retrieve,
    `serializer_class` every other action."""

    detail_serializer_class: type[serializers.BaseSerializer]

    def get_serializer_class(self) -> type[serializers.BaseSerializer]:
        return self.detail_serializer_class if self.action == "retrieve" else super().get_serializer_class()


# Inventory --------------------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(responses={200: s.VCenterSerializer(many=True), **ERRORS}),
    retrieve=extend_schema(responses={200: s.VCenterSerializer, **ERRORS, **NOT_FOUND}),
)
class VCenterViewSet(viewsets.ReadOnlyModelViewSet):
    """vCenter connections (never their passwords)."""

    permission_classes = [IsAuthenticated, HasPerm.of("inventory.view_vcenter")]
    serializer_class = s.VCenterSerializer
    queryset = VCenter.objects.annotate(vm_count=Count("vms", filter=Q(vms__removed_at__isnull=True))).order_by("name")


@extend_schema_view(
    list=extend_schema(
        parameters=[s.VMFilterSerializer],
        responses={200: s.VirtualMachineSerializer(many=True), **BAD_REQUEST, **ERRORS},
    ),
    retrieve=extend_schema(responses={200: s.VirtualMachineDetailSerializer, **ERRORS, **NOT_FOUND}),
)
class VirtualMachineViewSet(ListAndDetailViewSet):
    """VMs with the filters of the inventory page; one VM with its disks and protection group."""

    permission_classes = [IsAuthenticated, HasPerm.of("inventory.view_virtualmachine")]
    queryset = VirtualMachine.objects.all()
    serializer_class = s.VirtualMachineSerializer
    detail_serializer_class = s.VirtualMachineDetailSerializer

    def get_queryset(self) -> QuerySet[VirtualMachine]:
        related = ("vcenter", "folder", "protection_group")
        if self.action != "list":
            return VirtualMachine.objects.select_related(
                *related, "datacenter", "host", "resource_pool"
            ).prefetch_related("disks__datastore")
        query = _query(s.VMFilterSerializer, self.request)
        only_removed = query.get("protection") == "removed"
        filters = VmFilter(
            search=query.get("search"),
            vcenter_id=query.get("vcenter"),
            folder_id=query.get("folder"),
            folder_path=query.get("folder_path"),
            power_state=query.get("power_state"),
            protection=None if only_removed else query.get("protection"),
            include_removed=only_removed or query["include_removed"],
        )
        vms = vm_queryset(filters, query["sort"])
        if only_removed:
            vms = vms.filter(removed_at__isnull=False)
        return vms.select_related(*related)


# Protection groups ------------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(responses={200: s.ProtectionGroupSerializer(many=True), **ERRORS}),
    retrieve=extend_schema(responses={200: s.ProtectionGroupDetailSerializer, **ERRORS, **NOT_FOUND}),
)
class ProtectionGroupViewSet(ListAndDetailViewSet):
    """Protection groups with their policies; one group with its selection and members."""

    permission_classes = [IsAuthenticated, HasPerm.of("protection.view_protectiongroup")]
    queryset = ProtectionGroup.objects.all()
    serializer_class = s.ProtectionGroupSerializer
    detail_serializer_class = s.ProtectionGroupDetailSerializer

    def get_queryset(self) -> QuerySet[ProtectionGroup]:
        groups = ProtectionGroup.objects.select_related("policy").annotate(
            member_count=Count("members", filter=Q(members__removed_at__isnull=True), distinct=True)
        )
        if self.action == "retrieve":
            groups = groups.prefetch_related("folders", "vms", "excluded_vms", "excluded_disks__vm")
        return groups.order_by("name")


# Jobs -------------------------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(
        parameters=[s.JobFilterSerializer], responses={200: s.JobRunSerializer(many=True), **BAD_REQUEST, **ERRORS}
    ),
    retrieve=extend_schema(responses={200: s.JobRunDetailSerializer, **ERRORS, **NOT_FOUND}),
)
class JobRunViewSet(ListAndDetailViewSet):
    """Background jobs, newest first; one job with its progress and log. Restore operators see the
    jobs they started (`jobs.queries.visible_runs`); others' are 404."""

    permission_classes = [IsAuthenticated, HasPerm.of("jobs.view_jobrun")]
    queryset = JobRun.objects.all()
    serializer_class = s.JobRunSerializer
    detail_serializer_class = s.JobRunDetailSerializer

    def get_queryset(self) -> QuerySet[JobRun]:
        runs = visible_runs(self.request.user).select_related("created_by").order_by("-created")
        if self.action != "list":
            return runs
        query = _query(s.JobFilterSerializer, self.request)
        if query.get("status"):
            runs = runs.filter(status=query["status"])
        if query.get("kind"):
            runs = runs.filter(kind=query["kind"])
        return runs.defer("log", "traceback", "result", "params")


# Recovery points --------------------------------------------------------------------------------------


class IgnoreAccept(BaseContentNegotiation):
    """Downloads are bytes whatever the client accepts; errors are still JSON."""

    def select_parser(self, request: Request, parsers: Iterable[BaseParser]) -> BaseParser | None:
        return next(iter(parsers))

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderer = next(iter(renderers))
        return renderer, renderer.media_type


@contextmanager
def _filesystem_errors() -> Iterator[None]:
    """recovery.filesystems and recovery.browse errors as API answers."""
    try:
        yield
    except fs.NotFound as exc:
        raise NotFound(str(exc) or "Not in this recovery point.") from None
    except (fs.NotADirectory, fs.NotAFile) as exc:
        raise ValidationError({"path": [str(exc)]}) from None
    except (fs.FileSystemError, browse.PointUnavailable) as exc:
        raise Conflict(str(exc)) from None


@extend_schema_view(
    list=extend_schema(
        parameters=[s.PointFilterSerializer],
        responses={200: s.RecoveryPointSerializer(many=True), **BAD_REQUEST, **ERRORS},
    ),
    retrieve=extend_schema(responses={200: s.RecoveryPointDetailSerializer, **ERRORS, **NOT_FOUND}),
)
class RecoveryPointViewSet(ListAndDetailViewSet):
    """Recovery points the user may see (`recovery.access.visible_points`): every point for
    administrators and auditors, the points their grants cover for restore operators (a group grant:
    the points taken while the VM was in that group). Others' points are 404."""

    permission_classes = [IsAuthenticated, SeesRecoveryPoints]
    queryset = RecoveryPoint.objects.all()
    serializer_class = s.RecoveryPointSerializer
    detail_serializer_class = s.RecoveryPointDetailSerializer

    def get_queryset(self) -> QuerySet[RecoveryPoint]:
        points = access.visible_points(self.request.user).select_related("vm", "group").order_by("-created")
        if self.action == "retrieve":
            return points.prefetch_related("disks")
        if self.action != "list":
            return points
        query = _query(s.PointFilterSerializer, self.request)
        if query.get("vm"):
            points = points.filter(vm_id=query["vm"])
        if query.get("since"):
            points = points.filter(created__gte=query["since"])
        if query.get("until"):
            points = points.filter(created__lte=query["until"])
        return points

    def _point(self, allowed: Any) -> RecoveryPoint:
        point = self.get_object()
        if not allowed(self.request.user, point):
            raise PermissionDenied
        return point

    def _filesystem(self, point: RecoveryPoint, query: dict[str, Any]) -> fs.FileSystem:
        try:
            fs.split_path(query["path"])  # "..", NUL: refused before anything is opened
        except ValueError as exc:
            raise ValidationError({"path": [str(exc)]}) from None
        if not point.disks.filter(key=query["disk"]).exists():
            raise NotFound(f"This recovery point has no disk {query['disk']}.")
        with _filesystem_errors():
            return browse.open_filesystem(point, query["disk"], query["volume"])

    @extend_schema(responses={200: s.DiskVolumesSerializer(many=True), **ERRORS, **NOT_FOUND})
    @action(detail=True, methods=["get"], pagination_class=None)
    def volumes(self, request: Request, pk: str) -> Response:
        """The point's disks and their volumes (partitions, LVM volumes) with file systems."""
        point = self._point(access.can_browse_point)
        return Response(s.DiskVolumesSerializer(browse.disk_views(point), many=True).data)

    @extend_schema(
        parameters=[s.FolderQuerySerializer],
        responses={200: s.EntrySerializer(many=True), **BAD_REQUEST, **ERRORS, **NOT_FOUND, **CONFLICT},
    )
    @action(detail=True, methods=["get"])
    def files(self, request: Request, pk: str) -> Response:
        """The files and folders in one folder of a volume, folders first."""
        point = self._point(access.can_browse_point)
        query = _query(s.FolderQuerySerializer, request)
        filesystem = self._filesystem(point, query)
        with _filesystem_errors():  # metadata is read for the page's entries only
            listing = browse.FolderListing(point, query["disk"], query["volume"], filesystem, query["path"])
            page = self.paginate_queryset(listing)
        return self.get_paginated_response(s.EntrySerializer(page, many=True).data)

    @extend_schema(
        parameters=[s.FileQuerySerializer],
        responses={
            (200, "application/octet-stream"): OpenApiResponse(OpenApiTypes.BINARY, description="The file's bytes"),
            **BAD_REQUEST,
            **ERRORS,
            **NOT_FOUND,
            **CONFLICT,
        },
    )
    @action(detail=True, methods=["get"], content_negotiation_class=IgnoreAccept)
    def download(self, request: Request, pk: str) -> StreamingHttpResponse:
        """One file, streamed as is; recorded as a Restore and an audit entry like a page download."""
        point = self._point(access.can_download_point)
        query = _query(s.FileQuerySerializer, request)
        filesystem = self._filesystem(point, query)
        with _filesystem_errors():
            entry = filesystem.stat(query["path"])
            if entry.is_dir:
                raise ValidationError({"path": ["That is a folder: list it with files/ and download its files."]})
            stream = filesystem.open(query["path"])
            item = f"{query['disk']}:{query['volume']}:{query['path']}"
            return file_response(request.user, point, item, entry, stream)  # its first piece read: 409 if archived

    @extend_schema(
        request=s.RestoreVmRequestSerializer,
        responses={202: s.JobStartedSerializer, **BAD_REQUEST, **ERRORS, **NOT_FOUND, **CONFLICT},
    )
    @action(
        detail=True,
        methods=["post"],
        url_path="restore-vm",
        permission_classes=[IsAuthenticated, HasPerm.of("recovery.restore_vms")],
    )
    def restore_vm(self, request: Request, pk: str) -> Response:
        """Restore the whole VM as a new VM, or over the original (fields of the Restore VM page)."""
        point = self.get_object()
        if not isinstance(request.data, Mapping):
            raise ValidationError({"non_field_errors": ["Send an object with the form's fields."]})
        form = RestoreVmForm(request.data, point=point)
        if not form.is_valid():
            raise ValidationError(_form_errors(form))
        try:
            run = recovery_actions.start_vm_restore(request.user, point, form.target())
        except recovery_actions.RestoreRefused as exc:
            raise Conflict(str(exc)) from None
        body = s.JobStartedSerializer({"detail": f"{run.title}: queued.", "job": run}).data
        return Response(body, status=status.HTTP_202_ACCEPTED)


# Starting backups -------------------------------------------------------------------------------------


class BackupView(APIView):
    permission_classes = [IsAuthenticated, HasPerm.of("protection.backup_now")]

    @extend_schema(
        request=s.BackupRequestSerializer,
        responses={202: s.BackupStartedSerializer, **BAD_REQUEST, **ERRORS, **CONFLICT},
    )
    def post(self, request: Request) -> Response:
        """Back up a VM or a whole protection group now, outside the schedule (like "Back up now")."""
        data = s.BackupRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        vm, group = data.validated_data.get("vm"), data.validated_data.get("group")
        try:
            runs = protection_actions.backup_now(request.user, vm=vm, group=group)
        except protection_actions.SelectionConflict as exc:
            raise Conflict(str(exc)) from None
        if runs:
            detail = f"{len(runs)} backup job{'s' if len(runs) != 1 else ''} queued."
        else:
            detail = f"A backup of {vm or group} is already queued or running."
        body = s.BackupStartedSerializer({"detail": detail, "jobs": runs}).data
        return Response(body, status=status.HTTP_202_ACCEPTED)


# The caller -------------------------------------------------------------------------------------------


class MeView(APIView):
    @extend_schema(responses={200: s.MeSerializer, **ERRORS})
    def get(self, request: Request) -> Response:
        """Who the token belongs to, their roles, and the token in use (its name, scope and expiry; never its key)."""
        user = cast(User, request.user)  # DEFAULT_PERMISSION_CLASSES lets only authenticated users in
        body = {
            "username": user.get_username(),
            "roles": user_roles(user),
            "token": request.auth if isinstance(request.auth, ApiToken) else None,
        }
        return Response(s.MeSerializer(body).data)
