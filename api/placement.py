"""`GET /api/v1/vms/{id}/placement/`: where a restore of a VM can put it (the folders, resource pools,
hosts, datastores with their free space, and networks of its datacenter), each with the id the
restore-vm request takes and the inventory path it also accepts (inventory.placement)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api.permissions import HasPerm
from api.serializers import MAX_ID, ErrorSerializer, NamedRef
from inventory import placement
from recovery import access

RESTORE_VMS = "recovery.restore_vms"


class TargetSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True, help_text="What the restore-vm request takes")
    name = serializers.CharField(read_only=True)
    path = serializers.SerializerMethodField(
        help_text='Inventory path as govc writes it ("DC/host/Cluster/Resources"), also accepted by restore-vm'
    )

    def get_path(self, obj: Any) -> str:
        return placement.label(obj)


class HostTargetSerializer(TargetSerializer):
    connection_state = serializers.CharField(read_only=True)


class DatastoreTargetSerializer(TargetSerializer):
    type = serializers.CharField(read_only=True)
    capacity_bytes = serializers.IntegerField(read_only=True)
    free_bytes = serializers.IntegerField(read_only=True)


class NetworkTargetSerializer(TargetSerializer):
    kind = serializers.CharField(
        read_only=True, help_text='"Network", "DistributedVirtualPortgroup" or "OpaqueNetwork"'
    )


class PlacementSerializer(serializers.Serializer):
    vm = NamedRef(read_only=True)
    datacenter = NamedRef(read_only=True, allow_null=True)
    folders = TargetSerializer(many=True, read_only=True)
    pools = TargetSerializer(many=True, read_only=True)
    hosts = HostTargetSerializer(many=True, read_only=True)
    datastores = DatastoreTargetSerializer(many=True, read_only=True)
    networks = NetworkTargetSerializer(many=True, read_only=True)


class VmPlacementView(APIView):
    """Where a restore of this VM can go: the targets of its datacenter, by id and path."""

    permission_classes = [IsAuthenticated, HasPerm.of(RESTORE_VMS)]

    @extend_schema(
        operation_id="vms_placement_retrieve",
        responses={
            200: PlacementSerializer,
            401: OpenApiResponse(ErrorSerializer, description="No token, or a wrong one"),
            403: OpenApiResponse(ErrorSerializer, description="The user's role does not allow it"),
            404: OpenApiResponse(ErrorSerializer, description="No such VM, or not visible to the user"),
        },
    )
    def get(self, request: Request, pk: int) -> Response:
        vms = access.visible_vms(request.user).select_related("datacenter")
        vm = vms.filter(pk=pk).first() if 0 < pk <= MAX_ID else None
        if vm is None:
            raise NotFound("No such VM.")
        body = {
            "vm": vm,
            "datacenter": vm.datacenter,
            "folders": placement.candidates("folder", vm),
            "pools": placement.candidates("pool", vm),
            "hosts": placement.candidates("host", vm),
            "datastores": placement.candidates("datastore", vm),
            "networks": placement.candidates("network", vm),
        }
        return Response(PlacementSerializer(body).data)
