"""HTMX helpers shared by every app."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils.cache import patch_vary_headers


def htmx_partial(request: HttpRequest) -> bool:
    """True when the request wants a fragment rather than a whole page."""
    htmx = getattr(request, "htmx", None)  # set by django-htmx's middleware
    if not htmx:
        return False
    return not htmx.boosted


class VaryOnHtmxMiddleware:
    """Fragments and full pages share URLs: caches must key on HX-Request."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        patch_vary_headers(response, ("HX-Request",))
        return response
