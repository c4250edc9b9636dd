"""File downloads: the one place where an export's bytes (`arbook.exports`) become an HTTP response."""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from django.http import HttpResponse, StreamingHttpResponse
from django.utils.http import content_disposition_header

from arbook.exports import CONTENT_TYPES, file_chunks


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
    """A streamed download of ready-made bytes in `fmt` ("csv" or "xlsx"), named `filename.<fmt>`."""
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
