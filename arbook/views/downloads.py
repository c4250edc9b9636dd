"""File downloads: the one place where an export's bytes (`arbook.exports`) become an HTTP response."""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from django.http import HttpResponse, StreamingHttpResponse
from django.utils.http import content_disposition_header

from arbook.exports import CONTENT_TYPES, EXPORT_FORMATS, file_chunks


def safe_filename(filename: str, *, default: str = "export", limit: int | None = 120) -> str:
    """`filename` as a download may name it: ASCII letters, digits and ._- only, at most `limit`."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", filename).strip("-.") or default
    return name[:limit]


def attachment(response: HttpResponse, filename: str, *, private: bool = True) -> HttpResponse:
    """Mark `response` as a download named `filename`; `private`: receivables are never kept by a
    shared cache (the Espay template, the same for everyone, may be)."""
    response["Content-Disposition"] = content_disposition_header(as_attachment=True, filename=filename)
    if private:
        response["Cache-Control"] = "private, no-store"
    return response


def download(chunks: Iterable[bytes], fmt: str, filename: str) -> StreamingHttpResponse:
    """A streamed download of ready-made bytes in `fmt` ("csv", "xlsx" or "pdf"), named `filename.<fmt>`."""
    if not filename.lower().endswith(f".{fmt}"):
        filename += f".{fmt}"
    response = StreamingHttpResponse(iter(chunks), content_type=CONTENT_TYPES[fmt])
    attachment(response, safe_filename(filename))
    response["X-Accel-Buffering"] = "no"  # tell proxies not to buffer the stream
    return response


def export_response(fmt: str, rows: Iterable[Sequence[Any]], header: Sequence[str], filename_stem: str, *,
                    sheet_title: str = "Export") -> StreamingHttpResponse:
    """`rows` under `header` as a `fmt` download (check EXPORT_FORMATS first: else ValueError)."""
    return download(file_chunks(fmt, rows, header, sheet_title=sheet_title), fmt, filename_stem)


def export_asked(fmt: str | None, *, rejected: bool, notices: list[str]) -> tuple[bool, int]:
    """Whether a list page should send its `?_export=` file, and else the page's status.

    An unknown format is a notice on the page (200); a list with a filter left out answers 400
    with the page and its notices rather than a file of something else than was asked for."""
    if not fmt:
        return False, 200
    if fmt not in EXPORT_FORMATS:
        notices.append("Export as csv or xlsx.")
        return False, 200
    if rejected:
        notices.append("Nothing was exported: fix the filters marked below first, so the file holds exactly what "
                       "you asked for.")
        return False, 400
    return True, 200
