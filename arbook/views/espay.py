"""Espay batch pages: upload → preview (or every problem) → confirm → progress → results.

Thin: reading and validating is `arbook.services.espay_files` / `espay_batch`, reads are
`arbook.selectors.espay`, files are written by `arbook.exports` and sent by `arbook.views.downloads`. Every batch is looked up
through the user's merchants (another merchant's batch answers 404, for pages and POSTs alike).
"""
from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from arbook.forms.espay import EspayUploadForm, line_filter
from arbook.models import EspayBatch
from arbook.params import page_of
from arbook.selectors import espay as selectors
from arbook.services import espay_batch as service
from arbook.services.espay_files import (
    COLUMNS,
    EXAMPLE_DOC_NO,
    MAX_FILE_BYTES,
    MAX_ROWS,
    UploadError,
    bank_label,
    template_csv,
    template_xlsx,
)
from arbook.exports import CSV_TYPE, EXPORT_FORMATS, XLSX_TYPE
from arbook.views.downloads import attachment, export_response, safe_filename

LINES_PER_PAGE = 200
BATCHES_PER_PAGE = 50
PROBLEMS_SHOWN = 1000


@require_safe
def batch_list(request):
    batches, page_note = page_of(selectors.espay_batches(user=request.user), per_page=BATCHES_PER_PAGE,
                                 number=request.GET.get("page"))
    return render(request, "arbook/espay/batch_list.html", {
        "page": batches, "page_note": page_note,
        "can_upload": selectors.espay_credentials(user=request.user).exists(),
    })


@require_http_methods(["GET", "POST"])
def batch_new(request):
    limit_message = ""
    form = None
    if request.method == "POST":
        # Refuse an oversized body before Django reads (and spools) it.
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > MAX_FILE_BYTES + 256 * 1024:
            limit_message = (f"The file is {length / 1024 / 1024:.1f} MB; the limit is "
                             f"{MAX_FILE_BYTES // 1024 // 1024} MB (about {MAX_ROWS:,} rows). Split it into smaller files.")
        else:
            form = EspayUploadForm(request.POST, request.FILES, user=request.user)
            if form.is_valid():
                upload = form.cleaned_data["file"]
                try:
                    batch = service.espay_batch_create(credential=form.cleaned_data["credential"], user=request.user,
                                                       file_name=upload.name, content=upload.read())
                except UploadError as exc:
                    form.add_error("file", str(exc))
                else:
                    return redirect("espay_batch_detail", pk=batch.pk)
    if form is None:
        form = EspayUploadForm(user=request.user)
        credentials = form.fields["credential"].queryset
        if len(credentials) >= 1:
            form.fields["credential"].initial = credentials[0].pk
    return render(request, "arbook/espay/batch_new.html", {
        "form": form, "limit_message": limit_message, "columns": COLUMNS, "max_rows": MAX_ROWS,
        "max_mb": MAX_FILE_BYTES // 1024 // 1024, "example_doc_no": EXAMPLE_DOC_NO,
        "has_credentials": form.fields["credential"].queryset.exists(),
    }, status=413 if limit_message else 200)


@require_safe
def batch_detail(request, pk: int):
    batch = selectors.espay_batch_for(user=request.user, pk=pk)
    context = {"batch": batch, "progress": selectors.batch_progress(batch=batch)}
    if batch.status == EspayBatch.Status.INVALID:
        context["problems"] = (batch.problems or [])[:PROBLEMS_SHOWN]
        context["problems_hidden"] = batch.problem_count - len(context["problems"])
    elif batch.status == EspayBatch.Status.READY:
        context["summary"] = selectors.batch_summary(batch=batch)
        context["preview"] = batch.lines.order_by("row_number")[:20]
    elif batch.status != EspayBatch.Status.DISCARDED:
        show, show_note = line_filter(request.GET.get("show"))
        banks = selectors.batch_bank_codes(batch=batch)
        page, page_note = page_of(selectors.batch_lines(batch=batch, show=show), per_page=LINES_PER_PAGE,
                                  number=request.GET.get("page"))
        rows = []
        for line in page.object_list:
            numbers = {va.bank_code: va for va in line.virtual_accounts.all()}
            rows.append({"line": line, "vas": [numbers.get(code) for code in banks]})
        context.update(page=page, page_note=page_note, line_notes=[n for n in (show_note, page_note) if n],
                       rows=rows, show=show, banks=[(code, bank_label(code)) for code in banks],
                       filters=[("", "All"), ("problems", "Problems"), ("sent", "Sent"), ("waiting", "Waiting")],
                       chunks=batch.chunks.order_by("number"))
    return render(request, "arbook/espay/batch_detail.html", context)


@never_cache
@require_safe
def batch_progress(request, pk: int):
    batch = selectors.espay_batch_for(user=request.user, pk=pk)
    return JsonResponse(selectors.batch_progress(batch=batch))


def _post_action(request, pk: int, action, done_level=messages.SUCCESS):
    batch = selectors.espay_batch_for(user=request.user, pk=pk)
    outcome = action(batch=batch, user=request.user)
    messages.add_message(request, done_level if outcome.ok else messages.WARNING, outcome.message)
    return redirect("espay_batch_detail", pk=batch.pk)


@require_POST
def batch_confirm(request, pk: int):
    return _post_action(request, pk, service.espay_batch_confirm)


@require_POST
def batch_retry(request, pk: int):
    return _post_action(request, pk, service.espay_batch_retry_failed)


@require_POST
def batch_resume(request, pk: int):
    return _post_action(request, pk, service.espay_batch_resume)


@require_POST
def batch_discard(request, pk: int):
    batch = selectors.espay_batch_for(user=request.user, pk=pk)
    if service.espay_batch_discard(batch=batch, user=request.user):
        messages.success(request, f"Batch #{batch.pk} was discarded; nothing was sent.")
        return redirect("espay_batch_list")
    messages.warning(request, "Only a batch that was not confirmed can be discarded.")
    return redirect("espay_batch_detail", pk=batch.pk)


def _batch_rows_export(request, pk: int, fmt: str, *, rows_of, name: str, sheet_title: str):
    if fmt not in EXPORT_FORMATS:
        raise Http404("Export as csv or xlsx.")
    batch = selectors.espay_batch_for(user=request.user, pk=pk)
    header, rows = rows_of(batch=batch)
    return export_response(fmt, rows, header, f"espay-batch-{batch.pk}-{name}", sheet_title=sheet_title)


@require_safe
def batch_export(request, pk: int, fmt: str):
    return _batch_rows_export(request, pk, fmt, rows_of=selectors.batch_export, name="va-numbers",
                              sheet_title="VA numbers")


@require_safe
def batch_problems(request, pk: int, fmt: str):
    return _batch_rows_export(request, pk, fmt, rows_of=selectors.batch_problem_rows, name="problems",
                              sheet_title="Problems")


@require_safe
def batch_file(request, pk: int):
    """The file exactly as uploaded (what was validated and sent)."""
    batch = selectors.espay_batch_for(user=request.user, pk=pk, with_file=True)
    response = HttpResponse(bytes(batch.file_content), content_type=XLSX_TYPE if batch.file_kind == "xlsx"
                            else "text/csv")
    return attachment(response, safe_filename(batch.file_name, default=f"batch-{batch.pk}", limit=None))


@require_safe
def template(request, fmt: str):
    if fmt == "csv":
        response = HttpResponse(template_csv(), content_type=CSV_TYPE)
    elif fmt == "xlsx":
        response = HttpResponse(template_xlsx(), content_type=XLSX_TYPE)
    else:
        raise Http404("Templates come as csv or xlsx.")
    return attachment(response, f"espay-invoices-template.{fmt}", private=False)


urlpatterns = [
    path("espay/batches/", batch_list, name="espay_batch_list"),
    path("espay/batches/new/", batch_new, name="espay_batch_new"),
    path("espay/batches/template.<str:fmt>", template, name="espay_template"),
    path("espay/batches/<int:pk>/", batch_detail, name="espay_batch_detail"),
    path("espay/batches/<int:pk>/confirm/", batch_confirm, name="espay_batch_confirm"),
    path("espay/batches/<int:pk>/retry/", batch_retry, name="espay_batch_retry"),
    path("espay/batches/<int:pk>/resume/", batch_resume, name="espay_batch_resume"),
    path("espay/batches/<int:pk>/discard/", batch_discard, name="espay_batch_discard"),
    path("espay/batches/<int:pk>/progress/", batch_progress, name="espay_batch_progress"),
    path("espay/batches/<int:pk>/export.<str:fmt>", batch_export, name="espay_batch_export"),
    path("espay/batches/<int:pk>/problems.<str:fmt>", batch_problems, name="espay_batch_problems"),
    path("espay/batches/<int:pk>/file/", batch_file, name="espay_batch_file"),
]
