"""`python manage.py gateway_sandbox --port 8900`: the bundled gateway sandbox (see gateways/sandbox)."""
from __future__ import annotations

from django.core.management.base import BaseCommand

from gateways.sandbox.__main__ import main


class Command(BaseCommand):
    help = "Serve the bundled gateway sandbox (the five providers' APIs) on localhost."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8900)
        parser.add_argument("--seed", type=int, default=42)
        parser.add_argument("--size", type=int, default=200)
        parser.add_argument("--sizes", default="{}")

    def handle(self, *args, host, port, seed, size, sizes, **options):
        main(["--host", host, "--port", str(port), "--seed", str(seed), "--size", str(size), "--sizes", sizes])
