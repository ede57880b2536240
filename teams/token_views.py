"""API tokens on My account (one's own: list, create, revoke) and on the Users page (an administrator
lists and revokes anyone's). Each view answers an HTMX request with the fragment
`teams/_api_tokens.html` and a plain request with a page around it, so the fragment works alone.

Permission checks are here (a fragment can be requested directly): anyone signed in manages their
own tokens; someone else's need auth.change_user, and the target's tokens are 404 otherwise.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from accounts import tokens
from accounts.models import ApiToken
from lib.htmx import htmx_partial

EXPIRY_CHOICES = [("30", "30 days"), ("90", "90 days"), ("365", "1 year")]


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What will use it: a script, a monitoring system.")
    scope = forms.ChoiceField(choices=ApiToken.Scope.choices, initial=ApiToken.Scope.READ)
    expires_in_days = forms.TypedChoiceField(
        label="Expires in", choices=EXPIRY_CHOICES, coerce=int, initial=str(tokens.DEFAULT_EXPIRY_DAYS)
    )


@require_http_methods(["GET", "POST"])
def mine(request: HttpRequest) -> HttpResponse:
    user = request.user
    form = TokenForm(request.POST or None)
    key = None
    if request.method == "POST" and form.is_valid():
        try:
            _, key = tokens.create_token(
                user,
                user,
                form.cleaned_data["name"],
                form.cleaned_data["scope"],
                form.cleaned_data["expires_in_days"],
            )
            form = TokenForm()
        except tokens.TokenRefused as exc:
            form.add_error(None, str(exc))
    # The key is rendered in this one response only; nothing keeps it (not the session, not a message).
    return _render(request, user, form=form, key=key)


@permission_required(tokens.MANAGE_OTHERS, raise_exception=True)
@require_http_methods(["GET"])
def of_user(request: HttpRequest, pk: int) -> HttpResponse:
    return _render(request, get_object_or_404(get_user_model(), pk=pk))


@require_POST
def revoke(request: HttpRequest, pk: int) -> HttpResponse:
    token = get_object_or_404(ApiToken.objects.select_related("user"), pk=pk)
    if not tokens.may_manage(request.user, token.user):
        # Someone else's token: as if it did not exist (token ids are not theirs to learn).
        return HttpResponse(status=404)
    mine = token.user == request.user
    try:
        tokens.revoke_token(request.user, token)
    except tokens.TokenRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"The token {token.name!r} is revoked.")
    if htmx_partial(request):
        return _render(request, token.user, form=TokenForm() if mine else None)
    return redirect(reverse("tokens:mine") if mine else reverse("tokens:of_user", args=[token.user.pk]))


def _render(request: HttpRequest, user: Any, *, form: TokenForm | None = None, key: str | None = None) -> HttpResponse:
    own = user == request.user
    rows = [(token, tokens.state_of(token)) for token in tokens.tokens_of(user)]
    context = {
        "owner": user,
        "own": own,
        "rows": rows,
        "form": form if own else None,
        "key": key,
        "fragment_url": reverse("tokens:mine") if own else reverse("tokens:of_user", args=[user.pk]),
    }
    template = "teams/_api_tokens.html" if htmx_partial(request) else "teams/api_tokens.html"
    response = render(request, template, context)
    if key:
        response["Cache-Control"] = "no-store"  # the one response that holds the key
    return response
