from django.apps import AppConfig


class ArbookConfig(AppConfig):
    name = "arbook"
    verbose_name = "arbook"
    default_auto_field = "django.db.models.BigAutoField"
