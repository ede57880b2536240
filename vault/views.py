"""The Vault page: capacity and status of both tiers, recovery points, maintenance, settings.

Views stay thin: check the permission, call an action or enqueue a job, respond.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from jobs import runner
from vault import actions, jobs, queries
from vault.forms import KeyImportForm, LockForm, VaultSettingsForm
from vault.models import LOCAL_TIER, VAULT_TIER, RecoveryPoint, VaultSettings

VIEW = "vault.view_recoverypoint"
MANAGE = "vault.change_recoverypoint"
CONFIGURE = "vault.change_vaultsettings"

# What the maintenance buttons start: (job kind, params).
MAINTENANCE: dict[str, tuple[str, dict[str, Any]]] = {
    "prune": (jobs.PRUNE_KIND, {}),
    "gc": (jobs.GC_KIND, {}),
    "tier": (jobs.TIER_KIND, {}),
    "usage": (jobs.USAGE_KIND, {}),
    "repair": (jobs.REPAIR_KIND, {}),
}
# The verify buttons: which tier each one checks.
VERIFY_TIERS = {"verify": LOCAL_TIER, "verify-vault": VAULT_TIER}


def _page(request: HttpRequest, **extra) -> HttpResponse:
    config = VaultSettings.current()
    context = {
        "info": queries.overview(),
        "points": queries.recent_points(),
        "now": timezone.now(),
        "lock_form": LockForm(initial={"until": timezone.localdate() + dt.timedelta(days=365)}),
    }
    if request.user.has_perm(CONFIGURE):
        context.setdefault("settings_form", VaultSettingsForm(instance=config))
        context.setdefault("key_form", KeyImportForm())
    context.update(extra)
    return render(request, "vault/index.html", context)


@permission_required(VIEW, raise_exception=True)
def index(request: HttpRequest) -> HttpResponse:
    return _page(request)


@permission_required(VIEW, raise_exception=True)
def prune_preview(request: HttpRequest) -> HttpResponse:
    return render(request, "vault/index.html#prune-preview", {"plan": actions.plan_prune()})


@permission_required(CONFIGURE, raise_exception=True)
@require_POST
def save_settings(request: HttpRequest) -> HttpResponse:
    form = VaultSettingsForm(request.POST, instance=VaultSettings.current())
    if form.is_valid():
        config = form.save(commit=False)
        secret = form.cleaned_data["secret"] or None
        try:
            description = actions.check_vault(config, secret=secret) if config.enabled else "none"
        except actions.VaultActionError as exc:
            form.add_error(None, str(exc))
        else:
            actions.save_settings(request.user, config, secret=secret)
            messages.success(request, f"Vault settings saved. Vault: {description}.")
            return redirect("vault:index")
    return _page(request, settings_form=form)


@permission_required(CONFIGURE, raise_exception=True)
@require_POST
def create_key(request: HttpRequest) -> HttpResponse:
    try:
        key = actions.create_encryption_key(request.user)
    except actions.VaultActionError as exc:
        messages.error(request, str(exc))
        return redirect("vault:index")
    # Shown in this one response only: not stored in the session, not in a message, never again.
    return _page(request, new_key=key)


@permission_required(CONFIGURE, raise_exception=True)
@require_POST
def import_key(request: HttpRequest) -> HttpResponse:
    form = KeyImportForm(request.POST)
    if form.is_valid():
        try:
            actions.import_encryption_key(request.user, form.cleaned_data["key"])
        except actions.VaultActionError as exc:
            form.add_error("key", str(exc))
        else:
            messages.success(request, "Vault key saved.")
            return redirect("vault:index")
    return _page(request, key_form=form)


@permission_required(MANAGE, raise_exception=True)
@require_POST
def start(request: HttpRequest, task: str) -> HttpResponse:
    if task in VERIFY_TIERS:
        run = jobs.enqueue_verify(VERIFY_TIERS[task], user=request.user, target_label="vault", allow_empty=True)
    elif task == "replicate":
        backlog = actions.replication_backlog()
        if not backlog:
            messages.info(request, "Nothing waits for the vault.")
            return redirect("vault:index")
        params = {"point_ids": [str(p.pk) for p in backlog]}
        run = runner.enqueue(actions.REPLICATE_KIND, params=params, user=request.user, target_label="vault")
    elif task in MAINTENANCE:
        kind, params = MAINTENANCE[task]
        run = runner.enqueue(kind, params=params, user=request.user, target_label="vault")
    else:
        return HttpResponse(status=404)
    return redirect("jobs:detail", run.pk)


@permission_required(MANAGE, raise_exception=True)
@require_POST
def replicate_point(request: HttpRequest, pk: str) -> HttpResponse:
    point = get_object_or_404(RecoveryPoint, pk=pk)
    run = actions.enqueue_replication(point, user=request.user)
    if run is None:
        messages.error(request, "No vault is configured.")
        return redirect("vault:index")
    return redirect("jobs:detail", run.pk)


@permission_required(MANAGE, raise_exception=True)
@require_POST
def lock_point(request: HttpRequest, pk: str) -> HttpResponse:
    point = get_object_or_404(RecoveryPoint, pk=pk)
    form = LockForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Give the date the lock ends.")
        return redirect("vault:index")
    until = timezone.make_aware(dt.datetime.combine(form.cleaned_data["until"], dt.time(0, 0)))
    return _change_point(
        request, point, lambda: actions.lock_point(request.user, point, until), done=f"is locked until {until:%Y-%m-%d}"
    )


@permission_required("vault.delete_recoverypoint", raise_exception=True)
@require_POST
def delete_point(request: HttpRequest, pk: str) -> HttpResponse:
    point = get_object_or_404(RecoveryPoint, pk=pk)
    if request.POST.get("confirm", "").strip() != point.vm.name:
        messages.error(request, f"Not deleted: type the VM name ({point.vm.name}) to confirm.")
        return redirect("vault:index")
    return _change_point(
        request, point, lambda: actions.delete_point(request.user, point), done="deleted from every tier"
    )


def _change_point(request: HttpRequest, point: RecoveryPoint, change: Callable[[], object], done: str) -> HttpResponse:
    """Make `change` to `point`, then back to the Vault page saying "<point> <done>." or why it was refused."""
    try:
        change()
    except actions.VaultActionError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{point} {done}.")
    return redirect("vault:index")


@permission_required(VIEW, raise_exception=True)
def recovery_services(request: HttpRequest) -> HttpResponse:
    context = {**queries.recovery_services_panel(), "refresh_url": request.path}
    return render(request, "vault/_recovery_services.html", context)
