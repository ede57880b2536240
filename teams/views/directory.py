"""The Directory settings page (administrators: auth.change_group, since it decides who gets which
role): the connection, tested before it is saved, and the directory groups' mappings.

The test binds with the bind account, looks one named user up and shows their groups and the roles
those map to; Save runs the same test and saves only when it passes. The bind password is never
rendered (the field is write-only). Changes are teams.directory_actions and teams.mapping_actions, audited there.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from teams import directory_actions as actions
from teams import mapping_actions
from teams.directory import CheckResult, DirectoryError, check, environment_settings
from teams.directory_forms import DirectoryForm, MappingForm, TestForm, initial_from
from teams.mapping import membership_for
from teams.models import DirectoryConfig, GroupMapping

MANAGE = "auth.change_group"


def _mappings() -> Any:
    return (
        GroupMapping.objects.filter(source=GroupMapping.Source.DIRECTORY)
        .select_related("role")
        .prefetch_related("grant_groups", "grant_folders")
    )


def _explained(result: CheckResult) -> dict[str, Any]:
    """The test's answer: each group found with the mapping it matches, and what they give together."""
    by_dn = {m.external_group.strip().lower(): m for m in _mappings()}
    groups = [(dn, by_dn.get(dn.strip().lower())) for dn in result.group_dns]
    membership = membership_for(GroupMapping.Source.DIRECTORY, result.group_dns)
    return {"user_dn": result.user_dn, "groups": groups, "roles": sorted(membership.roles), "empty": membership.empty}


def _page(request: HttpRequest, form: Any, **extra: Any) -> HttpResponse:
    context = {
        "form": form,
        "from_environment": environment_settings(),
        "stored": DirectoryConfig.objects.filter(pk=1).first(),
        "mappings": _mappings(),
        "mapping_form": extra.pop("mapping_form", None) or MappingForm(),
        **extra,
    }
    return render(request, "teams/directory.html", context)


@never_cache
@permission_required(MANAGE, raise_exception=True)
def directory_settings(request: HttpRequest) -> HttpResponse:
    stored = DirectoryConfig.objects.filter(pk=1).first() or DirectoryConfig()
    from_env = environment_settings()
    posted = request.POST if request.method == "POST" else None
    form: TestForm | DirectoryForm = (
        TestForm(posted) if from_env else DirectoryForm(posted, stored=stored, initial=initial_from(stored))
    )
    if posted is None or not form.is_valid():
        return _page(request, form)
    settings = from_env or form.directory_settings()  # type: ignore[union-attr]
    try:
        result = check(settings, form.cleaned_data["test_user"])
    except DirectoryError as exc:
        form.add_error(None, str(exc))
        return _page(request, form)
    if "save" in posted and from_env is None:
        actions.save_directory_config(request.user, settings, enabled=form.cleaned_data["enabled"])
        messages.success(request, "The test passed and the directory settings are saved.")
        return redirect("directory:settings")
    return _page(request, form, result=_explained(result))


@require_POST
@permission_required(MANAGE, raise_exception=True)
def directory_disable(request: HttpRequest) -> HttpResponse:
    actions.disable_directory(request.user)
    messages.success(request, "Sign-in with the directory is off; directory users cannot sign in until it is on again.")
    return redirect("directory:settings")


@require_POST
@permission_required(MANAGE, raise_exception=True)
def mapping_add(request: HttpRequest) -> HttpResponse:
    form = MappingForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            mapping_actions.add_mapping(
                request.user,
                GroupMapping.Source.DIRECTORY,
                data["external_group"],
                data["role"],
                data["grant_groups"],
                data["grant_folders"],
            )
        except mapping_actions.MappingRefused as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Members of {data['external_group']} get it at their next sign-in.")
            return redirect("directory:settings")
    stored = DirectoryConfig.objects.filter(pk=1).first() or DirectoryConfig()
    return _page(request, DirectoryForm(stored=stored, initial=initial_from(stored)), mapping_form=form)


@require_POST
@permission_required(MANAGE, raise_exception=True)
def mapping_remove(request: HttpRequest, pk: int) -> HttpResponse:
    mapping = get_object_or_404(GroupMapping, pk=pk, source=GroupMapping.Source.DIRECTORY)
    mapping_actions.remove_mapping(request.user, mapping)
    messages.success(
        request, f"Mapping of {mapping.external_group} removed: its members lose it at their next sign-in."
    )
    return redirect("directory:settings")
