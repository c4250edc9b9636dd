"""Celery tasks, one module per area; each task loads by id and calls one service.

Importing every submodule here lets `app.autodiscover_tasks()` (which imports `arbook.tasks`)
register them all.
"""
import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
