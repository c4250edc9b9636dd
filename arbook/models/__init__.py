"""arbook's models, one module per area; import them from here."""
from .customers import Customer, CustomerBalance, CustomerIdentity, DuplicateSuspect
from .invoices import Invoice, InvoiceEvent
from .merchants import PROVIDER_CHOICES, GatewayCredential, Merchant
from .sync import SyncRun, SyncSeen
from .espay import EspayBatch, EspayChunk, EspayLine, EspayVirtualAccount
from .notifications import Notification
from .collections import AuditEntry, Hold, HoldReason, Note, NoteRevision, Promise, SavedView
from .reminders import ReminderDrop, ReminderItem, ReminderMessage, ReminderStep
from .rollup import AgingRollup, DayRollup

__all__ = ["PROVIDER_CHOICES", "Merchant", "GatewayCredential", "Customer", "CustomerIdentity", "CustomerBalance", "DuplicateSuspect", "Invoice", "InvoiceEvent", "SyncRun", "SyncSeen",
           "EspayBatch", "EspayChunk", "EspayLine", "EspayVirtualAccount", "Notification",
           "Note", "NoteRevision", "HoldReason", "Hold", "Promise", "SavedView", "AuditEntry",
           "ReminderStep", "ReminderMessage", "ReminderItem", "ReminderDrop", "AgingRollup", "DayRollup"]
