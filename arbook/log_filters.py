"""Keep the per-credential notification token out of every log line.

A credential's receiver URL is `/hooks/<provider>/<token>/`, and the token is what authenticates
the provider's requests for Xendit-style schemes, so it must not end up in access logs, error
trackers or a terminal's scrollback. `mask_hook_tokens` rewrites it to `****`;
`HookTokenFilter` applies that to log records. It is installed in settings (LOGGING) on the
loggers that print request paths (`django.server`: runserver's request lines; `django.request`
and `django.security`: 4xx/5xx with the path) and on the console handler, and gunicorn's access
and error logs use it through `arbook.gunicorn_logging` (see `gunicorn.conf.py`).

No Django import: gunicorn's master process loads this before Django is set up.
"""
from __future__ import annotations

import logging
import re

MASK = "****"
#: `/hooks/<provider>/` followed by the token (up to the next `/`, `?`, `#`, quote or space).
_HOOK_TOKEN = re.compile(r"(/hooks/[^/\s?#\"'\\]+/)[^/\s?#\"'\\]+")
_FORMATTER = logging.Formatter()


def mask_hook_tokens(text: str) -> str:
    """`POST /hooks/xendit/Zk3...9Q/ HTTP/1.1` -> `POST /hooks/xendit/****/ HTTP/1.1`."""
    if "/hooks/" not in text:
        return text
    return _HOOK_TOKEN.sub(lambda m: m.group(1) + MASK, text)


class HookTokenFilter(logging.Filter):
    """Masks hook tokens in a record's arguments (keeping its format string, for grouping), and
    falls back to the masked final message when a token sits anywhere else (in the format string,
    inside an object's str()). A traceback's text is masked too. Never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(mask_hook_tokens(a) if isinstance(a, str) else a for a in record.args)
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is logging's own error to report
            return True
        masked = mask_hook_tokens(message)
        if masked != message:
            record.msg, record.args = masked, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = mask_hook_tokens(_FORMATTER.formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = mask_hook_tokens(record.exc_text)
        return True
