"""GET /api/v1/search/?q=…&vm=…: the file catalog search of the Recovery pages, for the API.

Each hit carries its versions and, for each, the points holding it and a download URL (the points
route, which checks and records the download as the page does). Only the catalog is read."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api.permissions import SeesRecoveryPoints
from recovery import access
from recovery.catalog import search as catalog_search

MAX_ID = 2**31 - 1


class SearchQuerySerializer(serializers.Serializer):
    q = serializers.CharField(
        max_length=1000, help_text="A name or part of one, a glob (report*, *.docx), or part of a path (bob/Documents)"
    )
    vm = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID, help_text="Only this VM's points")
    limit = serializers.IntegerField(required=False, default=catalog_search.LIMIT, min_value=1, max_value=1000)


class SearchPointSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    created = serializers.DateTimeField()


class SearchVersionSerializer(serializers.Serializer):
    is_dir = serializers.BooleanField()
    size = serializers.IntegerField()
    modified = serializers.DateTimeField(allow_null=True)
    owner = serializers.CharField()
    points = SearchPointSerializer(many=True, help_text="The points holding this version, newest first")
    download = serializers.CharField(allow_null=True, help_text="Download from the newest of them (files only)")


class SearchHitSerializer(serializers.Serializer):
    vm = serializers.IntegerField()
    vm_name = serializers.CharField()
    disk = serializers.IntegerField()
    volume = serializers.IntegerField()
    volume_label = serializers.CharField()
    path = serializers.CharField()
    name = serializers.CharField()
    is_dir = serializers.BooleanField()
    item = serializers.CharField(help_text="DISK:VOLUME:PATH, as restore-files --path takes it")
    versions = SearchVersionSerializer(many=True, help_text="Newest first")


class SearchResultSerializer(serializers.Serializer):
    query = serializers.CharField()
    truncated = serializers.BooleanField(help_text="More matched than the limit: narrow the pattern")
    results = SearchHitSerializer(many=True)


def _with_downloads(hit: catalog_search.Hit, request: Request) -> dict[str, Any]:
    """The hit, each file version with the URL that downloads it from the newest point holding it."""
    body = catalog_search.hit_as_dict(hit)
    for version, row in zip(hit.versions, body["versions"], strict=True):
        row["download"] = None
        if not version.is_dir:
            query = urlencode({"disk": hit.volume.disk_key, "volume": hit.volume.volume_index, "path": hit.path})
            url = f"{reverse('api:point-download', args=[version.newest.pk])}?{query}"
            row["download"] = request.build_absolute_uri(url)
    return body


class SearchView(APIView):
    permission_classes = [SeesRecoveryPoints]

    @extend_schema(parameters=[SearchQuerySerializer], responses={200: SearchResultSerializer})
    def get(self, request: Request) -> Response:
        """Files and folders by name, glob or path fragment in every point of the VMs the user may
        restore from, each with its versions and the points holding them."""
        query = SearchQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        vm = None
        if data.get("vm") is not None:
            vm = access.visible_vms(request.user).filter(pk=data["vm"]).first()
            if vm is None:
                raise NotFound("No such VM, or not one you may restore from.")
        try:
            result = catalog_search.search(request.user, data["q"], vm=vm, limit=data["limit"])
        except ValueError as exc:
            raise ValidationError({"q": [str(exc)]}) from None
        body = {
            "query": result.query,
            "truncated": result.truncated,
            "results": [_with_downloads(hit, request) for hit in result.hits],
        }
        return Response(SearchResultSerializer(body).data)
