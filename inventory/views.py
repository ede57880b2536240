from __future__ import annotations

from django.contrib.auth.decorators import permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from inventory.models import VCenter, VirtualMachine


@permission_required("inventory.view_virtualmachine", raise_exception=True)
def index(request: HttpRequest) -> HttpResponse:
    context = {
        "vcenters": VCenter.objects.all(),
        "vms": VirtualMachine.objects.select_related("vcenter")[:200],
    }
    return render(request, "inventory/index.html", context)
