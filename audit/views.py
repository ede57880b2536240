"""The audit log: every audited change, login and restore, filterable, paged and exportable as CSV."""

from __future__ import annotations

from django.contrib.auth.decorators import permission_required
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone

from audit import queries
from audit.forms import AuditFilterForm
from lib.csvexport import csv_response
from lib.htmx import htmx_partial

VIEW = "audit.view_auditentry"


@permission_required(VIEW, raise_exception=True)
def index(request: HttpRequest) -> HttpResponse:
    """The page, or only its table when HTMX asks (the same permission either way)."""
    form = AuditFilterForm(request.GET)
    rows, older = queries.page(queries.entries(form.filters()), request.GET.get("before"))
    query = request.GET.copy()
    query.pop("before", None)
    context = {
        "form": form,
        "rows": [(row, queries.detail_items(row.action, row.details)) for row in rows],
        "older": older,
        "is_first_page": not request.GET.get("before"),
        "query": query.urlencode(),
        "prefixes": queries.ACTION_PREFIXES,
    }
    template = "audit/index.html#audit-list" if htmx_partial(request) else "audit/index.html"
    return render(request, template, context)


@permission_required(VIEW, raise_exception=True)
def export_csv(request: HttpRequest) -> StreamingHttpResponse:
    """Every entry matching the page's filters, streamed."""
    rows = queries.entries(AuditFilterForm(request.GET).filters())
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
    header = [*queries.CSV_HEADER]
    header[0] = f"Time ({timezone.get_current_timezone_name()})"
    return csv_response(f"audit-{stamp}.csv", header, queries.csv_rows(rows))
