"""A user holding a generated or reset password must choose their own before anything else."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.urls import reverse

from accounts.models import Profile

# The page where a user changes their own password (the teams app serves it; named here, not imported,
# as accounts sits below teams) and the pages a user who must change it may still reach.
CHANGE_PASSWORD_URL_NAME = "teams:password"  # noqa: S105  (a URL name)
API_PREFIX = "/api/"
MUST_CHANGE_SENTENCE = "You must choose a new password before going on: sign in on the web page and change it."


def must_change(user_pk: int) -> bool:
    """Whether the user holds a generated or reset password. Sessions are checked here; API tokens by
    the API's authentication class (api.authentication), which has the token's user in hand."""
    return Profile.objects.filter(user_id=user_pk, must_change_password=True).exists()


class PasswordChangeRequiredMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and not self._exempt(request.path) and must_change(user.pk):
            return self._refuse(request)
        return self.get_response(request)

    @staticmethod
    def _exempt(path: str) -> bool:
        allowed = (reverse(CHANGE_PASSWORD_URL_NAME), reverse("logout"))
        return path in allowed or path.startswith(settings.STATIC_URL or "/static/")

    @staticmethod
    def _refuse(request: HttpRequest) -> HttpResponse:
        if request.path.startswith(API_PREFIX):
            return JsonResponse({"detail": MUST_CHANGE_SENTENCE}, status=403)
        target = reverse(CHANGE_PASSWORD_URL_NAME)
        if request.method == "GET" and request.path != reverse("dashboard:overview"):
            target += "?" + urlencode({"next": request.get_full_path()})
        if request.headers.get("HX-Request"):
            response = HttpResponse(status=204)
            response["HX-Redirect"] = target
            return response
        return redirect(target)
