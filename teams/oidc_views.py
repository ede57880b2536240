"""The two pages of the Entra ID sign-in: the start (redirect to the provider, with PKCE, state and a
nonce kept in the session) and the callback (the backend checks the answer). Any failure returns to the
login page with one sentence saying why."""

from __future__ import annotations

import re
from typing import Any

from django.contrib import messages
from django.core.exceptions import SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from teams import oidc
from teams.oidc_backend import refusal

CANCELLED = "The sign-in was cancelled at Microsoft, or Microsoft refused it (access_denied)."
NOT_THIS_SIGN_IN = "This answer from Microsoft does not match a sign-in started in this browser; sign in again."


def _back_to_login(request: HttpRequest, sentence: str) -> HttpResponse:
    messages.error(request, sentence)
    return HttpResponseRedirect(reverse("login"))


class EntraSignInView(OIDCAuthenticationRequestView):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # The library reads endpoints here; they are read in get(), where a failure can be answered.
        super(OIDCAuthenticationRequestView, self).__init__(*args, **kwargs)

    get_settings = staticmethod(oidc.library_setting)

    def get(self, request: HttpRequest) -> HttpResponse:
        if oidc.entra_id() is None:
            raise Http404("Sign-in with Microsoft is not configured")
        try:
            self.OIDC_OP_AUTH_ENDPOINT = self.get_settings("OIDC_OP_AUTHORIZATION_ENDPOINT")
            self.OIDC_RP_CLIENT_ID = self.get_settings("OIDC_RP_CLIENT_ID")
        except oidc.OidcUnavailable as exc:
            return _back_to_login(request, str(exc))
        return super().get(request)


class EntraCallbackView(OIDCAuthenticationCallbackView):
    get_settings = staticmethod(oidc.library_setting)

    def get(self, request: HttpRequest) -> HttpResponse:
        if oidc.entra_id() is None:
            raise Http404("Sign-in with Microsoft is not configured")
        try:
            return super().get(request)
        except SuspiciousOperation:  # a state this session never issued: replayed, or another browser's
            return _back_to_login(request, NOT_THIS_SIGN_IN)

    def login_failure(self) -> HttpResponse:
        request = self.request
        error = request.GET.get("error")
        if error:
            # Only the error code, and only a well-formed one: anyone can send a browser to this URL, so its
            # free text (error_description) is never shown on our login page.
            code = error if re.fullmatch(r"[a-z_]{1,40}", error) else "unknown_error"
            sentence = CANCELLED if code == "access_denied" else f"Microsoft did not sign you in ({code})."
        else:
            sentence = refusal(request) or NOT_THIS_SIGN_IN
        return _back_to_login(request, sentence)
