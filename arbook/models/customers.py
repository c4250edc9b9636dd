"""Customers: one debtor of a merchant across every gateway, and the keys that recognise it.

An invoice belongs to the customer that owns the first of its keys found, in the order of
`CustomerIdentity.Kind` (a gateway reference on the same credential, then the normalized e-mail,
then the E.164 phone; an invoice with none of them is its own key). A sync only ever *adds*
identities; it never moves one, so a merge or a split made by staff (which move identities)
survives every later sync. The rules are written in the README ("Customers").
"""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from .merchants import GatewayCredential, Merchant


class Customer(models.Model):
    """A debtor: what invoices are linked to, what collectors chase and statements are made for."""

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="customers", db_index=False)
    #: The name as the first invoice gave it; staff may correct it (a sync never overwrites it then).
    name = models.CharField(max_length=255, blank=True)
    name_locked = models.BooleanField(default=False, help_text="Set when staff edited the name.")
    #: The name folded for comparison (case, punctuation and legal forms removed): customers that
    #: share one are offered as merge suggestions, never merged by it.
    name_key = models.CharField(max_length=255, blank=True, default="", db_default="")
    created_at = models.DateTimeField(default=timezone.now)
    # A summary of its invoices, refreshed by the write path (`customers_refresh`) for the customers
    # a write touched: the customer list sorts and filters on these without reading invoices.
    invoice_count = models.PositiveIntegerField(default=0, db_default=0)
    open_count = models.PositiveIntegerField(default=0, db_default=0)
    #: The earliest due date of what it still owes: overdue days are counted from it at read time,
    #: so the figure is right every day without a rewrite.
    oldest_open_due = models.DateTimeField(null=True, blank=True)
    last_paid_at = models.DateTimeField(null=True, blank=True)
    #: The gateways it has invoices on, comma-separated, in alphabetical order.
    providers = models.CharField(max_length=64, blank=True, default="", db_default="")
    #: The member of the merchant who chases this customer (None: nobody yet).
    collector = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                  related_name="+", db_index=False)

    #: Reminders: the customer asked not to get them; the address they go to (empty: the
    #: customer's first e-mail identity).
    reminders_opt_out = models.BooleanField(default=False, db_default=False)
    reminder_email = models.EmailField(max_length=255, blank=True, default="", db_default="")

    class Meta:
        indexes = [models.Index(fields=["merchant", "name", "id"], name="customer_merchant_name"),
                   models.Index(fields=["merchant", "name_key"], name="customer_name_key"),
                   models.Index(fields=["merchant", "oldest_open_due", "id"], name="customer_oldest_due"),
                   models.Index(fields=["merchant", "last_paid_at", "id"], name="customer_last_paid"),
                   models.Index(fields=["merchant", "invoice_count", "id"], name="customer_invoice_count"),
                   # A user who sees several merchants: the list walks one index in order and
                   # skips the other merchants' customers, instead of sorting them all.
                   models.Index(fields=["name", "id"], name="customer_name_any"),
                   models.Index(fields=["oldest_open_due", "id"], name="customer_oldest_due_any"),
                   models.Index(fields=["last_paid_at", "id"], name="customer_last_paid_any"),
                   models.Index(fields=["invoice_count", "id"], name="customer_invoice_count_any"),
                   # Partial: a sync creates customers without one, and should not pay for it.
                   models.Index(fields=["collector", "id"], name="customer_collector",
                                condition=Q(collector__isnull=False))]

    def __str__(self) -> str:
        return self.name or f"Customer {self.pk}"


class CustomerIdentity(models.Model):
    """One key that recognises a customer. `value` is normalized; `shown` keeps the first form seen."""

    class Kind(models.TextChoices):
        # The order is the matching order (DESIGN: gateway reference, e-mail, phone).
        REF = "ref", "Gateway reference"
        EMAIL = "email", "E-mail"
        PHONE = "phone", "Phone"
        INVOICE = "invoice", "Single invoice"

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="+", db_index=False)
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="identities")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    #: The credential a gateway reference (or a single invoice) belongs to; None for e-mail and phone,
    #: which match across gateways.
    credential = models.ForeignKey(GatewayCredential, null=True, blank=True, on_delete=models.CASCADE,
                                   related_name="+", db_index=False)
    provider = models.CharField(max_length=16, blank=True, help_text="The gateway this key was first seen on.")
    value = models.CharField(max_length=255)
    shown = models.CharField(max_length=255, blank=True)
    #: Who moved it here by a merge or a split (None: found by a sync).
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+", db_index=False)
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            # Led by the credential (it belongs to one merchant): the one index a probe of a
            # gateway reference can use, and the one that serves deleting a credential. A second
            # index on the credential alone looked as cheap to the planner while the table grew
            # past its statistics, and every probe then read all of that credential's keys.
            models.UniqueConstraint(fields=["credential", "kind", "value"],
                                    condition=Q(credential__isnull=False), name="identity_unique_on_credential"),
            models.UniqueConstraint(fields=["merchant", "kind", "value"],
                                    condition=Q(credential__isnull=True), name="identity_unique_across"),
        ]
        # Partial: most keys (every sync's) have none, and a sync inserts tens of thousands; it
        # only serves deleting a user.
        indexes = [
            models.Index(fields=["decided_by"], condition=Q(decided_by__isnull=False), name="identity_decided_by"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.shown or self.value}"


class CustomerBalance(models.Model):
    """What a customer owes in one currency (receivable states), kept with its summary."""

    #: No index of its own: `balance_unique_currency` leads with it.
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="balances", db_index=False)
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="+", db_index=False)
    currency = models.CharField(max_length=3)
    outstanding = models.DecimalField(max_digits=18, decimal_places=2)
    open_count = models.PositiveIntegerField(default=0)
    #: Of `outstanding`, what was past due when the balance was last refreshed (`aged_at`), and
    #: the sum of each such invoice's amount times its due instant in days since the epoch: the
    #: worklist's priority at any later instant T is `overdue * T - overdue_weight` (amount times
    #: days overdue), one expression over these rows instead of a pass over the invoices.
    overdue = models.DecimalField(max_digits=18, decimal_places=2, default=0, db_default=0)
    overdue_weight = models.DecimalField(max_digits=30, decimal_places=4, default=0, db_default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["customer", "currency"], name="balance_unique_currency")]
        indexes = [models.Index(fields=["merchant", "currency", "outstanding", "customer"], name="balance_sort"),
                   # Several merchants at once (the list's order, aging by customer's candidates).
                   models.Index(fields=["currency", "outstanding", "customer"], name="balance_sort_any"),
                   # The worklist: who owes something overdue, with what its priority is computed
                   # from (an index-only scan; customers owing nothing overdue are not in it).
                   models.Index(fields=["merchant", "currency"], include=["overdue", "overdue_weight", "customer"],
                                condition=Q(overdue__gt=0), name="balance_overdue")]


class DuplicateSuspect(models.Model):
    """Possible double billing: two open invoices of one customer, same amount and currency, issued
    within `DUPLICATE_WINDOW_DAYS` of each other. Recomputed with the customer's summary."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="duplicate_suspects")
    invoice = models.ForeignKey("arbook.Invoice", on_delete=models.CASCADE, related_name="duplicate_suspects")
    other = models.ForeignKey("arbook.Invoice", on_delete=models.CASCADE, related_name="+")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["invoice", "other"], name="duplicate_unique_pair")]
