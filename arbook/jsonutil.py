"""JSON for provider payloads: Decimals stay exact (int when whole, else a decimal string)."""
from __future__ import annotations

from decimal import Decimal

from django.core.serializers.json import DjangoJSONEncoder


class RawJSONEncoder(DjangoJSONEncoder):
    def default(self, o):
        if isinstance(o, Decimal):
            return int(o) if o == o.to_integral_value() else str(o)
        return super().default(o)
