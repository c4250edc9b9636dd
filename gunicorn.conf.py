"""gunicorn settings for production: `gunicorn -c gunicorn.conf.py arbook.wsgi` (gunicorn also
reads ./gunicorn.conf.py by itself when started from the project's root).

Bind address, worker count and timeouts come from gunicorn's own flags and environment
(`--bind`/`$PORT`, `$WEB_CONCURRENCY`, `GUNICORN_CMD_ARGS`); this file only fixes what arbook
relies on.
"""
# The access log goes to stdout, with each notification URL's token masked
# (`/hooks/xendit/****/`): the token authenticates the provider's requests.
accesslog = "-"
logger_class = "arbook.gunicorn_logging.MaskingLogger"
