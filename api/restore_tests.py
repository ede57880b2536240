"""/api/v1/restore-tests/ and /api/v1/restore-test-policies/{group id}/: restore tests (issue 17) as the
command line has them - list (filters vm, state) and open them (with each check's steps), queue one
for a VM (by id or name; its newest untested point unless `point` is given), read and change a
protection group's policy. Reading needs restore_tests.view_restoretest (policies: view_
restoretestpolicy), starting add_restoretest, changing a policy change_restoretestpolicy
(administrators; auditors read). The actions are restore_tests.actions', audited there; a start
answers 202 with its job, as the restore endpoints do."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_field, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from api import serializers as s
from api.permissions import HasPerm
from api.views import BAD_REQUEST, CONFLICT, ERRORS, NOT_FOUND, Conflict, _query
from inventory.models import Host, VirtualMachine
from protection.models import ProtectionGroup
from restore_tests import actions
from restore_tests.models import RestoreTest, RestoreTestPolicy
from vault.models import RecoveryPoint

PERMS = {
    "list": "restore_tests.view_restoretest",
    "retrieve": "restore_tests.view_restoretest",
    "create": "restore_tests.add_restoretest",
}
POLICY_PERMS = {"retrieve": "restore_tests.view_restoretestpolicy", "update": "restore_tests.change_restoretestpolicy"}


class StepSerializer(serializers.Serializer):
    check = serializers.CharField(read_only=True, help_text="volumes, canary, start, heartbeat, ip, tcp, cleanup")
    ok = serializers.BooleanField(read_only=True)
    seconds = serializers.FloatField(read_only=True)
    detail = serializers.CharField(read_only=True)
    volumes = serializers.ListField(
        child=serializers.DictField(), read_only=True, help_text="The volume check's volumes (only on that step)"
    )


class RestoreTestSerializer(serializers.ModelSerializer):
    vm = s.NamedRef(read_only=True)
    point = serializers.UUIDField(source="point_id", read_only=True, allow_null=True, help_text="null once deleted")
    group = s.NamedRef(read_only=True, allow_null=True)
    # Plain text, not an enum: its values are RestoreTest.State's (instant recoveries' "state" is another set).
    state = serializers.CharField(read_only=True, help_text="queued, running, passed, failed or error (could not run)")
    state_display = serializers.CharField(source="get_state_display", read_only=True)
    instant_recovery = serializers.IntegerField(source="instant_recovery_id", read_only=True, allow_null=True)
    duration_seconds = serializers.SerializerMethodField()
    requested_by: serializers.SlugRelatedField = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    job = serializers.UUIDField(source="job_id", read_only=True, allow_null=True)

    class Meta:
        model = RestoreTest
        fields = [
            "id", "vm", "point", "point_created", "group", "state", "state_display", "failed_check", "error",
            "test_vm_name", "instant_recovery", "bytes_read", "queued", "started", "finished", "duration_seconds",
            "requested_by", "job",
        ]  # fmt: skip
        read_only_fields = fields

    def get_duration_seconds(self, test: RestoreTest) -> float | None:
        return test.duration.total_seconds() if test.duration else None


class RestoreTestDetailSerializer(RestoreTestSerializer):
    steps = StepSerializer(many=True, read_only=True, help_text="Each check in order, timed")

    class Meta(RestoreTestSerializer.Meta):
        fields = [*RestoreTestSerializer.Meta.fields, "steps"]
        read_only_fields = fields


class RestoreTestFilterSerializer(serializers.Serializer):
    vm = serializers.IntegerField(required=False, min_value=1, max_value=s.MAX_ID, help_text="VM id")
    state = serializers.ChoiceField(required=False, choices=RestoreTest.State.choices)


class VmRef(s.PlacementRef):
    """A VM's id or its name, kept as sent."""

    def to_internal_value(self, data: Any) -> int | str:
        if isinstance(data, bool) or not isinstance(data, int | str) or data == "":
            raise ValidationError("Give a VM id or name.")
        return data


class RestoreTestStartSerializer(serializers.Serializer):
    vm = VmRef(help_text="VM id or name")
    point = serializers.UUIDField(required=False, help_text="Recovery point (default: the newest not tested yet)")


class RestoreTestStartedSerializer(s.JobStartedSerializer):
    restore_test = RestoreTestSerializer()


def _vm(ref: int | str) -> VirtualMachine:
    if isinstance(ref, int):
        found = list(VirtualMachine.objects.filter(pk=ref)[:1]) if 0 < ref <= s.MAX_ID else []
    else:
        found = list(VirtualMachine.objects.filter(name=ref)[:2])
    if len(found) != 1:
        raise ValidationError({"vm": [f"{ref!r} names {'no' if not found else 'more than one'} VM."]})
    return found[0]


@extend_schema_view(
    list=extend_schema(
        parameters=[RestoreTestFilterSerializer],
        responses={200: RestoreTestSerializer(many=True), **BAD_REQUEST, **ERRORS},
    ),
    retrieve=extend_schema(responses={200: RestoreTestDetailSerializer, **ERRORS, **NOT_FOUND}),
    create=extend_schema(
        request=RestoreTestStartSerializer,
        responses={202: RestoreTestStartedSerializer, **BAD_REQUEST, **ERRORS, **CONFLICT},
    ),
)
class RestoreTestViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet
):
    """Restore tests, newest first: a VM's point started in isolation, checked and removed again."""

    serializer_class = RestoreTestSerializer
    lookup_value_regex = r"[0-9]+"

    def get_permissions(self) -> list[BasePermission]:
        return [IsAuthenticated(), HasPerm.of(PERMS.get(self.action or "", "restore_tests.add_restoretest"))()]

    def get_serializer_class(self) -> type[serializers.BaseSerializer]:
        return RestoreTestDetailSerializer if self.action == "retrieve" else RestoreTestSerializer

    def get_queryset(self) -> QuerySet[RestoreTest]:
        tests = RestoreTest.objects.select_related("vm", "group", "requested_by").order_by("-queued", "-pk")
        if self.action != "list":
            return tests
        query = _query(RestoreTestFilterSerializer, self.request)
        if "vm" in query:
            tests = tests.filter(vm_id=query["vm"])
        if "state" in query:
            tests = tests.filter(state=query["state"])
        return tests

    def get_object(self) -> RestoreTest:
        pk = self.kwargs["pk"]
        found = self.get_queryset().filter(pk=pk).first() if 0 < int(pk) <= s.MAX_ID else None
        if found is None:
            raise NotFound("No such restore test.")
        return found

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Queue a restore test of a VM: 202 with the job that starts its point in isolation and checks it."""
        if not isinstance(request.data, dict):
            raise ValidationError({"non_field_errors": ["Send an object."]})
        body = RestoreTestStartSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        vm = _vm(body.validated_data["vm"])
        point = None
        if "point" in body.validated_data:
            point = RecoveryPoint.objects.filter(pk=body.validated_data["point"], vm=vm).first()
            if point is None:
                raise ValidationError({"point": [f"No such recovery point of {vm.name}."]})
        try:
            test = actions.start_test(request.user, vm, point=point)
        except actions.RestoreTestRefused as exc:
            raise Conflict(str(exc)) from None
        answer: dict[str, Any] = {"detail": f"{test.job.title if test.job else 'Restore test'}: queued."}
        answer.update(job=test.job, restore_test=test)
        return Response(RestoreTestStartedSerializer(answer).data, status=status.HTTP_202_ACCEPTED)


@extend_schema_field({"type": "string", "pattern": "^[0-2][0-9]:[0-5][0-9]$", "example": "22:00"})
class WindowStart(serializers.TimeField):
    """HH:MM in the group's zone (JSON Schema's "time" format would want a UTC offset)."""


class RestoreTestPolicySerializer(serializers.ModelSerializer):
    window_start = WindowStart(
        format="%H:%M", input_formats=["%H:%M", "%H:%M:%S"], required=False,
        help_text="Tests start from this time, HH:MM (the group's zone)",
    )  # fmt: skip
    group = serializers.IntegerField(source="group_id", read_only=True)
    host = serializers.PrimaryKeyRelatedField(
        queryset=Host.objects.all(), allow_null=True, required=False, help_text="Host id (null: each VM's own)"
    )
    updated = serializers.DateTimeField(read_only=True, allow_null=True, help_text="null until first changed")
    saved = serializers.SerializerMethodField(help_text="false: the defaults, never changed for this group")

    class Meta:
        model = RestoreTestPolicy
        fields = ["group", *actions.POLICY_FIELDS, "updated", "saved"]
        read_only_fields = ["group", "updated", "saved"]

    def get_saved(self, policy: RestoreTestPolicy) -> bool:
        return policy.pk is not None


@extend_schema_view(
    retrieve=extend_schema(responses={200: RestoreTestPolicySerializer, **ERRORS, **NOT_FOUND}),
    update=extend_schema(
        request=RestoreTestPolicySerializer,
        responses={200: RestoreTestPolicySerializer, **BAD_REQUEST, **ERRORS, **NOT_FOUND},
    ),
)
class RestoreTestPolicyViewSet(viewsets.GenericViewSet):
    """A protection group's restore test policy, by the group's id (the defaults until it is changed).
    PUT changes the fields it sends and leaves the others."""

    serializer_class = RestoreTestPolicySerializer
    lookup_value_regex = r"[0-9]+"

    def get_permissions(self) -> list[BasePermission]:
        perm = POLICY_PERMS.get(self.action or "", "restore_tests.change_restoretestpolicy")
        return [IsAuthenticated(), HasPerm.of(perm)()]

    def get_object(self) -> RestoreTestPolicy:
        pk = self.kwargs["pk"]
        group = ProtectionGroup.objects.filter(pk=pk).first() if 0 < int(pk) <= s.MAX_ID else None
        if group is None:
            raise NotFound("No such protection group.")
        return RestoreTestPolicy.objects.filter(group=group).first() or RestoreTestPolicy(group=group)

    def retrieve(self, request: Request, pk: str) -> Response:
        """The group's policy: how often its VMs are proven, when, where and what is checked."""
        return Response(RestoreTestPolicySerializer(self.get_object()).data)

    def update(self, request: Request, pk: str) -> Response:
        """Change the group's policy (audited); 400 with the field errors."""
        policy = self.get_object()
        if not isinstance(request.data, dict):
            raise ValidationError({"non_field_errors": ["Send an object."]})
        body = RestoreTestPolicySerializer(policy, data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        try:
            saved = actions.save_policy(request.user, policy.group, **body.validated_data)
        except DjangoValidationError as exc:
            errors = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
            raise ValidationError(errors) from None
        return Response(RestoreTestPolicySerializer(saved).data)
