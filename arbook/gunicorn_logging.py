"""gunicorn's logger with the notification token masked (see `arbook.log_filters`).

Used by `gunicorn.conf.py` (`logger_class`). The access line's atoms (request line, path, the
environ and header values a custom `access_log_format` may print) are masked before they are
formatted; the error log ("Error handling request /hooks/...") gets the record filter.
"""
from __future__ import annotations

from gunicorn.glogging import Logger

from arbook.log_filters import HookTokenFilter, mask_hook_tokens


class MaskingLogger(Logger):
    def setup(self, cfg):
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            if not any(isinstance(f, HookTokenFilter) for f in log.filters):  # setup runs again on HUP
                log.addFilter(HookTokenFilter())

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        return {key: mask_hook_tokens(value) if isinstance(value, str) else value for key, value in atoms.items()}
