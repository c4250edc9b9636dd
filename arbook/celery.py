"""The Celery app: Redis when REDIS_URL is set, the embedded filesystem broker otherwise; and
`enqueue`, the one way services hand work to a worker."""
import os
from pathlib import Path

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "arbook.settings.development")

app = Celery("arbook")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_configure.connect
def _make_broker_dirs(sender, **kwargs):
    """The filesystem transport needs its folders to exist before the first message."""
    options = sender.conf.broker_transport_options or {}
    for key in ("data_folder_in", "data_folder_out", "control_folder"):
        if options.get(key):
            Path(options[key]).mkdir(parents=True, exist_ok=True)


def enqueue(name: str, *args, **kwargs) -> None:
    """Queue the task registered as `name` with these arguments (raises when the broker is down).

    By name, so that services never import the tasks that call them (DESIGN.md "Floors"). It
    calls the registered task's own `.delay()`, as the services did when they imported it, so
    `task_always_eager` (the tests' eager mode) runs it inline; `app.send_task` would ignore
    that setting. A worker registers the task modules when it starts (autodiscovery); any other
    process (web, commands, tests) on its first enqueue, and an unknown name fails here rather
    than queueing a message no worker can run."""
    if name not in app.tasks:
        app.autodiscover_tasks(force=True)
    app.tasks[name].delay(*args, **kwargs)
