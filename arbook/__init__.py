"""arbook: one accounts-receivable view over several payment gateways."""
from .celery import app as celery_app

__all__ = ["celery_app"]
