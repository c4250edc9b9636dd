"""`python manage.py send_reminders (--merchant ID | --all) [--dry-run]` runs today's reminders now
(the scheduler does it daily from 08:00 each merchant's time); `--where` says where e-mail goes."""
from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from arbook.exports.statements import statement_attachment
from arbook.models import Merchant
from arbook.services.reminders import merchant_day, reminders_choose, reminders_mark_run, reminders_run


class Command(BaseCommand):
    help = "Choose, re-check and send today's reminders now, and print a summary per merchant."

    def add_arguments(self, parser):
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--merchant", type=int, help="the merchant's id")
        target.add_argument("--all", action="store_true", help="every merchant with a reminder sequence")
        target.add_argument("--where", action="store_true", help="only say where e-mail goes")
        parser.add_argument("--dry-run", action="store_true", help="only say what would go out (no gateway, no mail)")

    def handle(self, *args, merchant: int | None, all: bool, where: bool, dry_run: bool, **options):
        if where:
            backend = settings.EMAIL_BACKEND
            self.stdout.write(f"files under {settings.EMAIL_FILE_PATH}" if "filebased" in backend else
                              f"{backend} ({settings.EMAIL_HOST}:{settings.EMAIL_PORT})")
            return
        merchants = list(Merchant.objects.filter(reminder_steps__is_active=True).distinct().order_by("pk")) if all \
            else list(Merchant.objects.filter(pk=merchant))
        if not merchants:
            raise CommandError("No such merchant." if merchant else "No merchant has a reminder sequence.")
        for m in merchants:
            day = merchant_day(m)
            if dry_run:
                choice = reminders_choose(merchant=m, day=day)
                self.stdout.write(f"{m} [{m.pk}] {day}: {len(choice.chosen)} e-mails would go out, "
                                  f"{len(choice.dropped)} invoices left out (before the gateway re-check)")
                continue
            result = reminders_run(merchant=m, day=day, statement=statement_attachment)
            reminders_mark_run(merchant=m, day=day)
            self.stdout.write(f"{m} [{m.pk}] {day}: {result['written']} written, {result['sent']} sent, "
                              f"{result['dropped']} invoices left out")
