"""Create an admin account when none exists, and say how to sign in (`make run`)."""
from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from arbook.settings.base import VAR_DIR


class Command(BaseCommand):
    help = "Create a superuser 'admin' with a generated password if no superuser exists."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")

    def handle(self, *args, username: str, **options):
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            self.stdout.write("An admin account exists already; sign in with it (or `manage.py changepassword`).")
            return
        password = secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email="", password=password)
        note = VAR_DIR / "admin-password.txt"
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        note.write_text(f"{username}\n{password}\n")
        note.chmod(0o600)
        self.stdout.write(self.style.SUCCESS(
            f"Created the admin account. Sign in at http://127.0.0.1:8000/accounts/login/ as "
            f"'{username}' with password '{password}' (also saved in {note})."
        ))
