"""Recount the aging rollup from the invoices (after TIME_ZONE changed, or to check it)."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from arbook.services.aging_rollup import RollupUnavailable, rollup_rebuild


class Command(BaseCommand):
    help = ("Recount the aging rollup from the invoices (all merchants, or --merchant) and say how many of its "
            "rows differed; --check counts without changing anything (exit status 1 when any differ).")

    def add_arguments(self, parser):
        parser.add_argument("--merchant", type=int, help="only this merchant's rows (its id)")
        parser.add_argument("--check", action="store_true", help="count the differences, change nothing")

    def handle(self, *args, merchant=None, check=False, **options):
        try:
            differing = rollup_rebuild(merchant_id=merchant, check_only=check)
        except RollupUnavailable as exc:
            raise CommandError(str(exc)) from None
        if check and differing:
            raise CommandError(f"The aging rollup differs from a recount at {differing} keys: run "
                               "`manage.py rebuild_aging_rollup` to recount it.")
        if check:
            self.stdout.write(self.style.SUCCESS("The aging rollup matches a recount."))
        else:
            self.stdout.write(self.style.SUCCESS(f"The aging rollup was recounted: it differed at {differing} keys."))
