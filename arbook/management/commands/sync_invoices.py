"""`python manage.py sync_invoices (--credential ID | --all) [--full]`: one synchronous sync each."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from arbook.models import GatewayCredential, SyncRun
from arbook.services.sync import invoices_sync


class Command(BaseCommand):
    help = "Sync invoices now, in this process, and print a summary per credential."

    def add_arguments(self, parser):
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--credential", type=int, help="the credential's id")
        target.add_argument("--all", action="store_true", help="every active credential")
        parser.add_argument("--full", action="store_true", help="a full reconciliation instead of an incremental read")

    def handle(self, *args, credential: int | None, all: bool, full: bool, **options):
        if all:
            credentials = list(GatewayCredential.objects.filter(is_active=True).select_related("merchant"))
        else:
            credentials = list(GatewayCredential.objects.filter(pk=credential).select_related("merchant"))
            if not credentials:
                raise CommandError(f"No credential with id {credential}.")
        failed = 0
        for cred in credentials:
            run = invoices_sync(credential=cred, full=full, trigger=SyncRun.Trigger.COMMAND)
            seconds = run.duration.total_seconds() if run.duration else 0.0
            line = (f"{cred} [{cred.pk}]: {run.status} ({'full' if run.full else 'incremental'}, {seconds:.1f}s) — "
                    f"{run.pages} pages, {run.fetched} fetched, {run.created} created, {run.updated} updated, "
                    f"{run.unchanged} unchanged, {run.lookups} looked up, {run.missing} missing")
            if run.status == SyncRun.Status.FAILED:
                failed += 1
                self.stdout.write(self.style.ERROR(f"{line}\n    error: {run.error}"))
            elif run.status == SyncRun.Status.SKIPPED:
                self.stdout.write(self.style.WARNING(f"{line}\n    skipped: {run.error}"))
            else:
                self.stdout.write(self.style.SUCCESS(line))
        if failed:
            raise CommandError(f"{failed} of {len(credentials)} sync(s) failed.")
