"""POST /api/v1/points/{id}/zip/: files and folders of a point as one streamed zip, as the Recovery
page's "Download selection" gives it: every entry of the selection, names made safe for Windows and
numbered when they meet, and RESTORE-REPORT.txt listing each rename, clamped date and item left out
(recovery.zipstream). Recorded as a Restore and an audit entry like the page's download."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.views import APIView

from api.permissions import SeesRecoveryPoints, downloadable_point
from api.views import BAD_REQUEST, CONFLICT, ERRORS, NOT_FOUND, IgnoreAccept, _filesystem_errors
from recovery import browse, downloads

MAX_ITEMS = 500  # what the page's selection basket holds


class ZipRequestSerializer(serializers.Serializer):
    items = serializers.ListField(
        child=serializers.CharField(trim_whitespace=False, max_length=20000),
        min_length=1,
        max_length=MAX_ITEMS,
        help_text='Files and folders as DISK:VOLUME:PATH ("2000:1:/Users/alice"), paths as files/ lists them',
    )


class PointZipView(APIView):
    permission_classes = [IsAuthenticated, SeesRecoveryPoints]
    content_negotiation_class = IgnoreAccept

    @extend_schema(
        request=ZipRequestSerializer,
        responses={
            (200, "application/zip"): OpenApiResponse(OpenApiTypes.BINARY, description="The zip, streamed"),
            **BAD_REQUEST,
            **ERRORS,
            **NOT_FOUND,
            **CONFLICT,
        },
    )
    def post(self, request: Request, pk: UUID) -> StreamingHttpResponse:
        """Download files and folders of a point as one zip (folders with everything below them)."""
        point = downloadable_point(request.user, pk)
        body = ZipRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        items = _items(body.validated_data["items"])
        disks = set(point.disks.values_list("key", flat=True))
        missing = sorted({item.disk for item in items} - disks)
        if missing:
            raise NotFound(f"This recovery point has no disk {missing[0]}.")
        # The archive is written as it is sent: check every item now, so a wrong path is a 404, not
        # a zip that stops half-way.
        with _filesystem_errors():
            opened = {}
            for item in items:
                if (item.disk, item.volume) not in opened:
                    opened[item.disk, item.volume] = browse.open_filesystem(point, item.disk, item.volume)
                opened[item.disk, item.volume].stat(item.path)
        return downloads.zip_response(request.user, point, items)


def _items(texts: list[Any]) -> list[browse.Item]:
    try:
        return [browse.Item.parse(text) for text in texts]
    except ValueError:
        message = 'Each item is DISK:VOLUME:PATH, e.g. "2000:1:/Users/alice" (no "..").'
        raise ValidationError({"items": [message]}) from None
