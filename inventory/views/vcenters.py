"""vCenter connections: list, add, edit, test, sync now, remove."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from inventory import actions
from inventory import vcenter as vsphere
from inventory.connection import ConnectionParams
from inventory.forms import VCenterForm
from inventory.models import VCenter


@permission_required("inventory.view_vcenter", raise_exception=True)
def vcenter_list(request: HttpRequest) -> HttpResponse:
    return render(request, "inventory/vcenters.html", {"vcenters": VCenter.objects.all()})


def _save(request: HttpRequest, form: VCenterForm, instance: VCenter | None) -> HttpResponse | None:
    """Test and save; on a connection problem, put the one clear message on the form."""
    params = form.params()
    try:
        if instance is None:
            vc = actions.add_vcenter(request.user, params)
            messages.success(request, f"{vc.name} added; the first inventory sync is running.")
        else:
            vc = actions.update_vcenter(request.user, instance, params)
            messages.success(request, f"{vc.name} saved.")
        return redirect("inventory:vcenters")
    except actions.PasswordRequired as exc:
        form.add_error("password", str(exc))
    except vsphere.CertificateNotTrusted as exc:
        form.untrusted_thumbprint = exc.thumbprint
        form.add_error(None, str(exc))
    except vsphere.ThumbprintMismatch as exc:
        form.add_error("thumbprint", str(exc))
    except vsphere.BadCredentials as exc:
        form.add_error("password", str(exc))
    except vsphere.VCenterError as exc:
        form.add_error("host", str(exc))
    return None


def _posted(request: HttpRequest) -> QueryDict | None:
    """The POST data, with the thumbprint the administrator chose to pin when they pressed "Pin"."""
    if request.method != "POST":
        return None
    data = request.POST.copy()
    if pinned := data.get("pin_thumbprint"):
        data["thumbprint"] = pinned
    return data


@permission_required("inventory.add_vcenter", raise_exception=True)
def vcenter_add(request: HttpRequest) -> HttpResponse:
    form = VCenterForm(_posted(request))
    if request.method == "POST" and form.is_valid() and (response := _save(request, form, None)):
        return response
    return render(request, "inventory/vcenter_form.html", {"form": form, "instance": None})


@permission_required("inventory.change_vcenter", raise_exception=True)
def vcenter_edit(request: HttpRequest, pk: int) -> HttpResponse:
    vc = get_object_or_404(VCenter, pk=pk)
    form = VCenterForm(_posted(request), instance=vc, initial=VCenterForm.initial_for(vc))
    if request.method == "POST" and form.is_valid() and (response := _save(request, form, vc)):
        return response
    return render(request, "inventory/vcenter_form.html", {"form": form, "instance": vc})


@require_POST
@permission_required("inventory.change_vcenter", raise_exception=True)
def vcenter_test(request: HttpRequest, pk: int) -> HttpResponse:
    vc = get_object_or_404(VCenter, pk=pk)
    params = ConnectionParams.of(vc)
    try:
        report, error = actions.test_connection(params), None
    except vsphere.VCenterError as exc:
        report, error = None, str(exc)
    context = {"vc": vc, "report": report, "error": error}
    return render(request, "inventory/vcenters.html#test-result", context)


@require_POST
@permission_required("inventory.sync_vcenter", raise_exception=True)
def vcenter_sync(request: HttpRequest, pk: int) -> HttpResponse:
    vc = get_object_or_404(VCenter, pk=pk)
    run = actions.enqueue_sync(vc, request.user)
    messages.info(request, f"Inventory sync of {vc.name} {run.get_status_display().lower()}.")
    return redirect("jobs:detail", pk=run.pk)


@permission_required("inventory.delete_vcenter", raise_exception=True)
def vcenter_remove(request: HttpRequest, pk: int) -> HttpResponse:
    vc = get_object_or_404(VCenter, pk=pk)
    if request.method == "POST":
        if request.POST.get("confirm") != vc.name:
            messages.error(request, "Type the connection's name to confirm.")
        else:
            try:
                actions.remove_vcenter(request.user, vc)
            except actions.VCenterHoldsPoints as exc:
                messages.error(request, str(exc))
            else:
                messages.success(request, f"{vc.name} removed.")
                return redirect("inventory:vcenters")
    return render(request, "inventory/vcenter_remove.html", {"vc": vc, "vm_count": vc.vms.count()})
