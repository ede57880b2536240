"""Reports: the protection status of every VM, as a printable page and a CSV download."""

from __future__ import annotations

from django.contrib.auth.decorators import permission_required
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone

from lib.csvexport import csv_response
from reports import queries

VIEW = "protection.view_protectiongroup"


@permission_required(VIEW, raise_exception=True)
def index(request: HttpRequest) -> HttpResponse:
    return redirect("reports:protection")


@permission_required(VIEW, raise_exception=True)
def protection(request: HttpRequest) -> HttpResponse:
    report = queries.protection_report()
    rows = report.rows
    only = request.GET.get("rpo", "")
    if only == "breached":  # the overview's "past their RPO" number links here
        rows = [row for row in rows if row.rpo == "breached"]
    elif request.GET.get("proof") == "overdue":  # not proven recoverable within their restore test policy
        only = "proof_overdue"
        rows = [row for row in rows if row.proof_overdue]
    context = {"report": report, "totals": report.totals, "rows": rows, "only": only}
    return render(request, "reports/protection.html", context)


@permission_required(VIEW, raise_exception=True)
def protection_csv(request: HttpRequest) -> StreamingHttpResponse:
    report = queries.protection_report()
    stamp = timezone.localtime(report.generated).strftime("%Y%m%d-%H%M")
    return csv_response(f"protection-{stamp}.csv", queries.csv_header(), queries.csv_rows(report))
