"""arbook's models, one module per area; import them from here."""
from .invoices import Invoice, InvoiceEvent
from .merchants import PROVIDER_CHOICES, GatewayCredential, Merchant
from .sync import SyncRun, SyncSeen

__all__ = ["PROVIDER_CHOICES", "Merchant", "GatewayCredential", "Invoice", "InvoiceEvent", "SyncRun", "SyncSeen"]
