"""A notification URL's token never reaches a log: runserver's request lines (django.server),
Django's 4xx/5xx warnings (django.request) and gunicorn's access and error logs mask it."""
from __future__ import annotations

import datetime as dt
import logging
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from django.core.handlers.wsgi import WSGIHandler
from django.db import connections
from django.core.servers.basehttp import WSGIRequestHandler, WSGIServer
from django.test import Client

from arbook.log_filters import HookTokenFilter, mask_hook_tokens
from tests.factories import CredentialFactory

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def server_log(caplog):
    """django.server does not propagate (Django's default): listen on it directly."""
    logger = logging.getLogger("django.server")
    logger.addHandler(caplog.handler)
    yield caplog
    logger.removeHandler(caplog.handler)


def logged(caplog) -> str:
    return "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records) + caplog.text


def test_mask_keeps_the_provider_and_the_rest_of_the_line():
    assert mask_hook_tokens('"POST /hooks/xendit/Zk3-_9Q/ HTTP/1.1" 200 2') == '"POST /hooks/xendit/****/ HTTP/1.1" 200 2'
    assert mask_hook_tokens("Not Found: /hooks/espay/abc/extra") == "Not Found: /hooks/espay/****/extra"
    assert mask_hook_tokens("GET /hooks/farpay/abc?x=1") == "GET /hooks/farpay/****?x=1"
    assert mask_hook_tokens("/invoices/12/") == "/invoices/12/"


@pytest.mark.django_db(transaction=True)
def test_the_development_server_request_line_masks_the_token(server_log):
    """A real runserver (Django's WSGIServer and request handler) in a thread."""
    token = CredentialFactory(provider="xendit", secrets={"callback_token": "t"}).hook_token
    httpd = WSGIServer(("127.0.0.1", 0), WSGIRequestHandler, ipv6=False)
    httpd.set_app(WSGIHandler())

    def serve():
        try:
            httpd.serve_forever()
        finally:
            connections.close_all()  # this thread's database connection

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{httpd.server_port}"
        with server_log.at_level(logging.INFO, logger="django.server"):
            requests.post(f"{base}/hooks/xendit/{token}/", data=b"{}", timeout=10)  # 401: bad callback token
            requests.post(f"{base}/hooks/xendit/{token}", data=b"{}", timeout=10)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)
    records = [r for r in server_log.records if r.name == "django.server"]
    assert len(records) == 2, [r.getMessage() for r in records]
    assert all("/hooks/xendit/****" in r.getMessage() for r in records)
    assert token not in logged(server_log)
    formatted = logging.getLogger("django.server").handlers[0].format(records[0])
    assert token not in formatted and "/hooks/xendit/****/" in formatted


@pytest.mark.django_db
def test_django_request_warnings_and_errors_mask_the_token(caplog, monkeypatch):
    token = CredentialFactory(provider="xendit").hook_token
    client = Client(raise_request_exception=False)
    with caplog.at_level(logging.INFO):
        assert client.post(f"/hooks/xendit/{token}/extra/").status_code == 404  # "Not Found: <path>"
        assert client.get(f"/hooks/xendit/{token}/x/y/z").status_code == 404

        def broken(**kwargs):
            raise RuntimeError(f"while handling /hooks/xendit/{token}/")

        monkeypatch.setattr("arbook.views.hooks.notification_receive", broken)
        assert client.post(f"/hooks/xendit/{token}/", b"{}", content_type="application/json").status_code == 500
    warnings = [r for r in caplog.records if r.name == "django.request"]
    assert len(warnings) == 3 and all("/hooks/xendit/****" in r.getMessage() for r in warnings)
    assert token not in logged(caplog)


def test_the_filter_never_drops_a_record_and_leaves_other_lines_alone():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%s: %s", ("Not Found", "/invoices/"), None)
    assert HookTokenFilter().filter(record) and record.getMessage() == "Not Found: /invoices/"
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "seen %s", (SimpleNamespace(path="/hooks/a/SECRET/"),),
                               None)  # a token inside an object's str()
    assert HookTokenFilter().filter(record) and "SECRET" not in record.getMessage()


def gunicorn_logger():
    """The logger class gunicorn.conf.py configures, set up the way gunicorn does."""
    from gunicorn.app.base import Application

    class App(Application):
        def init(self, parser, opts, args):
            return None

        def load_config(self):
            self.load_config_from_file(str(ROOT / "gunicorn.conf.py"))

        def load(self):
            return None

    app = App()
    return app.cfg, app.cfg.logger_class(app.cfg)


def test_gunicorn_access_and_error_logs_mask_the_token(capsys):
    cfg, log = gunicorn_logger()
    assert cfg.accesslog == "-" and type(log).__name__ == "MaskingLogger"
    token = "Zk3rT0k3n-_abcdefghijklmnopqrstuvwxyz012345"
    environ = {"REQUEST_METHOD": "POST", "RAW_URI": f"/hooks/xendit/{token}/", "PATH_INFO": f"/hooks/xendit/{token}/",
               "QUERY_STRING": "", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "203.0.113.9",
               "HTTP_USER_AGENT": "Xendit", "HTTP_REFERER": f"https://arbook.example/hooks/xendit/{token}/"}
    response = SimpleNamespace(status="200 OK", sent=2, headers=[("Content-Type", "text/plain")])
    request = SimpleNamespace(headers=[("USER-AGENT", "Xendit")])
    log.access(response, request, environ, dt.timedelta(milliseconds=4))
    log.exception("Error handling request %s", f"/hooks/xendit/{token}/")
    log.error(f"Error handling request /hooks/xendit/{token}")
    out = capsys.readouterr()
    text = out.out + out.err
    assert token not in text
    assert '"POST /hooks/xendit/****/ HTTP/1.1" 200 2' in out.out
    assert text.count("/hooks/xendit/****") == 4, text  # request line, referer, and the two error lines
