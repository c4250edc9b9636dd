"""Django admin: merchants (with members), credentials (secrets write-only), and read-only
invoices and sync runs. Thin: the logic is in forms and services."""
from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import flatten_fieldsets, unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from django.utils.html import format_html

import gateways
from arbook.forms.credentials import (OPTION_PREFIX, SECRET_PREFIX, credential_form, declared, provider_label,
                                      required_text, unknown_options)
from arbook.models import Customer, CustomerIdentity, GatewayCredential, Invoice, InvoiceEvent, Merchant, SyncRun
from arbook.models import AuditEntry, HoldReason, Notification, Promise, ReminderMessage, ReminderStep, SavedView

from arbook.services.credentials import credential_test_connection
from arbook.services.reminders import check_templates
from arbook.services.sync_schedule import sync_enqueue


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written by syncs are evidence: admins look, nobody edits."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class CredentialInline(admin.TabularInline):
    model = GatewayCredential
    fields = ["provider", "label", "is_active", "needs_attention", "last_success_at"]
    readonly_fields = fields
    extra = 0
    show_change_link = True
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


class ReminderStepForm(forms.ModelForm):
    """A step whose subject or body is not a valid template is refused here, not at send time."""

    class Meta:
        model = ReminderStep
        fields = ["offset_days", "name", "subject", "body", "attach_statement", "is_active"]
        widgets = {"body": forms.Textarea(attrs={"rows": 6, "cols": 60})}

    def clean(self):
        data = super().clean()
        try:
            check_templates(subject=data.get("subject") or "", body=data.get("body") or "")
        except ValueError as exc:
            raise forms.ValidationError(f"The template does not compile: {exc}") from None
        return data


class ReminderStepInline(admin.StackedInline):
    """The merchant's reminder sequence: one step per offset from the due date. Templates are
    Django templates (context: customer, merchant, step, today, invoices with their `ways` to pay,
    totals per currency; `{% load money %}` is loaded); /reminders/ previews them."""

    model = ReminderStep
    form = ReminderStepForm
    extra = 0


class HoldReasonInline(admin.TabularInline):
    """The merchant's list of reasons to hold an invoice: retire one by unticking it (holds that
    use it keep it), never delete one in use."""

    model = HoldReason
    fields = ["label", "is_active"]
    extra = 1
    can_delete = False


@admin.register(Merchant)
class MerchantAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "timezone", "member_count"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    filter_horizontal = ["members"]
    inlines = [CredentialInline, HoldReasonInline, ReminderStepInline]

    @admin.display(description="Members")
    def member_count(self, obj):
        return obj.members.count()


@admin.register(GatewayCredential)
class GatewayCredentialAdmin(admin.ModelAdmin):
    """The form shows the chosen provider's fields only (`credential_form`): the provider comes
    from the POST, else `?provider=` (what credential-form.js sets when the select changes), else
    the stored one; an add form without one asks for the provider first. "Test connection" on the
    form posts `_test_connection` and answers JSON: the values on the form, checked, not saved."""

    form = credential_form(None)
    change_form_template = "admin/arbook/gatewaycredential/change_form.html"
    list_display = ["__str__", "provider", "is_active", "attention", "last_success_at", "keys_set"]
    list_filter = ["provider", "is_active", "needs_attention", "merchant"]
    search_fields = ["label", "merchant__name"]
    list_select_related = ["merchant"]
    readonly_fields = ["keys_set", "hook_url", "needs_attention", "last_sync_at", "last_success_at",
                       "last_full_sync_at", "last_error"]
    actions = ["test_connection", "sync_now", "full_sync_now"]

    @staticmethod
    def chosen_provider(request, obj=None) -> str | None:
        source = request.POST if request.method == "POST" else request.GET
        for provider in (source.get("provider"), obj.provider if obj else None):
            if provider in gateways.PROVIDERS:
                return provider
        return None

    def get_form(self, request, obj=None, **kwargs):
        kwargs["form"] = credential_form(self.chosen_provider(request, obj))
        return super().get_form(request, obj, **kwargs)

    def get_fieldsets(self, request, obj=None):
        provider = self.chosen_provider(request, obj)
        main = ["merchant", "provider", "label", "base_url", "is_active"]
        schedule = ("Schedule", {"fields": ["sync_interval_minutes", "full_sync_interval_hours"]})
        state = ("State", {"fields": ["needs_attention", "last_sync_at", "last_success_at", "last_full_sync_at",
                                      "last_error", "hook_url"]})
        if provider is None:
            return [(None, {"fields": main, "description": "Choose the provider first: its secrets and options "
                                                           "are shown then."}), schedule]
        secrets, options = declared(provider)
        stored_keys = ["remove_keys"] if obj and obj.secrets_encrypted else []
        unknown = ["remove_options"] if obj and unknown_options(provider, obj.options) else []
        label = provider_label(provider)
        return [
            (None, {"fields": main}),
            (f"{label} secrets (write-only)", {
                "fields": ["keys_set", *(SECRET_PREFIX + f.name for f in secrets), *stored_keys],
                "description": f"Values are never shown. A blank field keeps the stored value. "
                               f"{label} needs {required_text(provider)}."}),
            (f"{label} options", {"fields": [*(OPTION_PREFIX + f.name for f in options), *unknown],
                                  "description": "A blank field means the default."}),
            schedule, *([state] if obj else []),
        ]

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        if request.method == "POST" and "_test_connection" in request.POST:
            return self.test_connection_on_form(request, object_id)
        return super().changeform_view(request, object_id, form_url, extra_context)

    def test_connection_on_form(self, request, object_id):
        """Check the values on the form with one call (`credential_test_connection`); nothing is
        saved, and the answer (JSON, for credential-form.js) never holds a secret."""
        obj = self.get_object(request, unquote(object_id)) if object_id else None
        if object_id and obj is None:
            raise Http404
        if not (self.has_change_permission(request, obj) if obj else self.has_add_permission(request)):
            raise PermissionDenied
        fieldsets = self.get_fieldsets(request, obj)
        form_class = self.get_form(request, obj, change=obj is not None, fields=flatten_fieldsets(fieldsets))
        form = form_class(request.POST, instance=obj)
        if not form.is_valid():
            return JsonResponse({"ok": False, "message": f"Not tested: {form.error_text()}"})
        ok, message = credential_test_connection(credential=form.unsaved_credential())
        return JsonResponse({"ok": ok, "message": message})

    @admin.display(description="Keys set")
    def keys_set(self, obj):
        if not obj or not obj.secrets_encrypted:
            return "none"
        keys = obj.secret_keys_set
        if not keys:
            return "unreadable with the configured ARBOOK_ENCRYPTION_KEYS"
        known = {f.name for f in declared(obj.provider)[0]}
        stray = [k for k in keys if k not in known]
        note = f" ({', '.join(stray)}: not used by {obj.get_provider_display()}, removed on save)" if stray else ""
        return ", ".join(keys) + note

    @admin.display(description="Needs attention", boolean=True)
    def attention(self, obj):
        return obj.needs_attention

    @admin.display(description="Notification URL")
    def hook_url(self, obj):
        if not obj or not obj.pk:
            return "shown after saving"
        return format_html("<code>/hooks/{}/{}/</code> (prefix with this site's address)", obj.provider, obj.hook_token)

    @admin.action(description="Test connection")
    def test_connection(self, request, queryset):
        for credential in queryset.select_related("merchant"):
            ok, message = credential_test_connection(credential=credential)
            self.message_user(request, f"{credential}: {message}", messages.SUCCESS if ok else messages.ERROR)

    def _enqueue(self, request, queryset, *, full: bool):
        for credential in queryset.select_related("merchant"):
            if sync_enqueue(credential=credential, full=full, trigger=SyncRun.Trigger.ADMIN):
                self.message_user(request, f"{credential}: {'full ' if full else ''}sync queued.", messages.SUCCESS)
            else:
                self.message_user(request, f"{credential}: nothing to sync (inactive, or no list API).",
                                  messages.WARNING)

    @admin.action(description="Sync now")
    def sync_now(self, request, queryset):
        self._enqueue(request, queryset, full=False)

    @admin.action(description="Full reconciliation now")
    def full_sync_now(self, request, queryset):
        self._enqueue(request, queryset, full=True)


class ReadOnlyInline(admin.TabularInline):
    """Rows shown under their parent, as evidence: `fields` are all read-only, none added or removed."""

    extra = 0
    can_delete = False

    def get_readonly_fields(self, request, obj=None):
        return self.fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class EventInline(ReadOnlyInline):
    model = InvoiceEvent
    fields = ["seen_at", "source", "sync_run", "notification", "status_before", "status_after", "outstanding_before",
              "outstanding_after", "paid_at_before", "paid_at_after", "note"]


@admin.register(Invoice)
class InvoiceAdmin(ReadOnlyAdmin):
    list_display = ["number", "external_id", "merchant", "provider", "customer_name", "customer", "currency", "amount",
                    "outstanding", "status", "due_at"]
    list_filter = ["provider", "status", "currency", "merchant"]
    search_fields = ["=number", "=external_id", "customer_name"]
    list_select_related = ["merchant", "customer"]
    show_full_result_count = False  # no COUNT(*) over a million rows on every page
    exclude = ["raw"]
    readonly_fields = ["raw_pretty"]
    inlines = [EventInline]

    @admin.display(description="Raw provider payload")
    def raw_pretty(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.raw, indent=2, sort_keys=True, default=str))


class IdentityInline(ReadOnlyInline):
    model = CustomerIdentity
    fields = ["kind", "shown", "value", "provider", "credential", "decided_by", "decided_at", "created_at"]


@admin.register(Customer)
class CustomerAdmin(ReadOnlyAdmin):
    """Customers are found by the identity rules; staff merge and split them on the customer pages."""

    list_display = ["name", "merchant", "providers", "invoice_count", "open_count", "oldest_open_due", "last_paid_at"]
    list_filter = ["merchant"]
    search_fields = ["name", "=identities__value"]
    list_select_related = ["merchant"]
    show_full_result_count = False
    inlines = [IdentityInline]


@admin.register(SyncRun)
class SyncRunAdmin(ReadOnlyAdmin):
    list_display = ["credential", "trigger", "full", "status", "started_at", "finished_at", "pages", "fetched",
                    "created", "updated", "unchanged", "lookups", "missing"]
    list_filter = ["status", "trigger", "full", "credential__provider"]
    list_select_related = ["credential__merchant"]
    show_full_result_count = False


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    """Payment notifications as received (raw, append-only): evidence, never edited."""

    list_display = ["id", "received_at", "provider", "credential", "verification", "outcome", "external_id",
                    "event_id", "event_at"]
    list_filter = ["provider", "verification", "outcome"]
    search_fields = ["=external_id", "=event_id"]
    list_select_related = ["credential__merchant"]
    show_full_result_count = False
    exclude = ["headers", "parsed", "body"]
    readonly_fields = ["headers_pretty", "body_pretty", "parsed_pretty"]

    @admin.display(description="Headers (secret-bearing ones masked)")
    def headers_pretty(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.headers, indent=2, sort_keys=True))

    @admin.display(description="Body as received")
    def body_pretty(self, obj):
        return format_html("<pre>{}</pre>", obj.body)

    @admin.display(description="Parsed change")
    def parsed_pretty(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.parsed, indent=2, sort_keys=True, default=str))


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    """The trail of staff's decisions on the collector's pages (notes, holds, assignments)."""

    list_display = ["at", "user", "merchant", "action", "summary"]
    list_filter = ["action", "merchant"]
    search_fields = ["summary", "target"]
    list_select_related = ["user", "merchant"]
    date_hierarchy = "at"
    show_full_result_count = False


@admin.register(Promise)
class PromiseAdmin(ReadOnlyAdmin):
    """Promises to pay, as recorded on the customer pages and the worklist (their state is kept by
    the payments and the scheduler, never edited by hand)."""

    list_display = ["made_at", "customer", "merchant", "currency", "amount", "promised_for", "state", "paid", "made_by"]
    list_filter = ["state", "merchant"]
    search_fields = ["customer__name"]
    list_select_related = ["customer", "merchant", "made_by"]
    date_hierarchy = "made_at"
    show_full_result_count = False


@admin.register(SavedView)
class SavedViewAdmin(admin.ModelAdmin):
    """Saved views: an admin may delete one (say, a shared view that misleads); owners make them."""

    list_display = ["name", "owner", "shared_with", "url", "created_at"]
    list_filter = ["shared_with"]
    search_fields = ["name", "url", "owner__username"]
    list_select_related = ["owner", "shared_with"]
    readonly_fields = ["owner", "name", "url", "shared_with", "created_at"]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(ReminderMessage)
class ReminderMessageAdmin(ReadOnlyAdmin):
    """The reminders' outbox: what was written, to whom, and whether SMTP took it ("unknown": it
    was handed over and no answer was recorded; it is never resent by itself)."""

    list_display = ["created_at", "customer", "merchant", "to", "step", "state", "attempts", "sent_at"]
    list_filter = ["state", "merchant"]
    search_fields = ["to", "subject", "customer__name"]
    list_select_related = ["customer", "merchant", "step"]
    date_hierarchy = "created_at"
    show_full_result_count = False
