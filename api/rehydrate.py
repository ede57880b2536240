"""POST /api/v1/points/{id}/rehydrate/: bring a vault point's archived chunks back online, as the
point page's Rehydrate button does. Azure bills it and takes hours, so the request says it knows:
without `"confirm": true` the answer is a 400 saying what it costs and takes, and nothing starts.
Allowed to whoever may restore files from the point's VM; audited through vault.actions."""

from __future__ import annotations

from uuid import UUID

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api.permissions import SeesRecoveryPoints, downloadable_point
from api.views import BAD_REQUEST, CONFLICT, ERRORS, NOT_FOUND, Conflict
from vault import actions, archive


class RehydrateRequestSerializer(serializers.Serializer):
    priority = serializers.ChoiceField(
        choices=archive.PRIORITIES,
        default="Standard",
        help_text=f"Standard: {archive.REHYDRATION_TIME['Standard']}; High: {archive.REHYDRATION_TIME['High']}, "
        "billed at a higher rate",
    )
    confirm = serializers.BooleanField(
        default=False, help_text="true: you accept that Azure bills the rehydration (without it nothing starts)"
    )


class RehydrateResultSerializer(serializers.Serializer):
    archived_chunks = serializers.IntegerField(help_text="Still archived (0: the point can be read now)")
    rehydrating_chunks = serializers.IntegerField()
    priority = serializers.CharField()
    detail = serializers.CharField()


class PointRehydrateView(APIView):
    permission_classes = [IsAuthenticated, SeesRecoveryPoints]

    @extend_schema(
        request=RehydrateRequestSerializer,
        responses={
            202: OpenApiResponse(RehydrateResultSerializer, description="Started (or the point is online already)"),
            **BAD_REQUEST,
            **ERRORS,
            **NOT_FOUND,
            **CONFLICT,
        },
    )
    def post(self, request: Request, pk: UUID) -> Response:
        """Rehydrate a vault point's archived chunks (billed by Azure; send "confirm": true)."""
        point = downloadable_point(request.user, pk)
        body = RehydrateRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        priority = body.validated_data["priority"]
        if not body.validated_data["confirm"]:
            message = f'{archive.cost(point, priority)} Send "confirm": true to start it; nothing was started.'
            raise ValidationError({"confirm": [message]})
        try:
            after = actions.rehydrate_point(request.user, point, priority=priority)
        except actions.VaultActionError as exc:
            raise Conflict(str(exc)) from None
        if after.archived:
            detail = f"Rehydration started: Azure brings the chunks back in {archive.REHYDRATION_TIME[priority]}."
        else:
            detail = "The point's chunks are online: it can be browsed and restored now."
        result = {"archived_chunks": after.archived, "rehydrating_chunks": after.rehydrating, "priority": priority}
        return Response({**result, "detail": detail}, status=status.HTTP_202_ACCEPTED)
