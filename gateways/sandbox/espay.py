"""Espay in the sandbox: `sendinvoice` (VA numbers per bank) and `merchantinfo`.

Unlike the pull providers, Espay has no invoice list, so there is no seeded population: the
"population" is what clients have listed through sendinvoice, kept in memory per community code
(`reset()` forgets it). That memory is what makes a retried batch answer 0002 ("Data already
listed") for the documents its first try already listed.

Where Espay's documents are silent the sandbox makes these choices (ASSUMPTIONS; the client's
AUTH_CODES follow the 01xx ones): errors come back as HTTP 200 with a non-0000 `error_code`, as Espay's legacy
REST services do; request-level codes 0001 mandatory field empty, 0101 invalid signature, 0102
unknown community code, 0103 invalid merchant key, 0104 total_invoices mismatch, 0105 more than
500 invoices, 0106 bad rq_datetime, 0107 invoices not a JSON object, 0108 currency not IDR;
per-invoice codes 0001 (documented), 0002 (documented), 0003 invalid amount, 0004 invalid billing
date, 0005 member rejected (forced by a member_code starting with "REJECT"), 0006 line not an
object; a VA expires 7 days after the request day at 23:59:59 Jakarta; VA numbers and doc_ref_no
are derived from (comm_code, doc_no), so they are the same on every run.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections import deque
from datetime import datetime, time, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlencode

from gateways import status as st
from gateways.base import JAKARTA

from .core import ProviderSandbox, Request, Response

DT = "%Y-%m-%d %H:%M:%S"
MAX_INVOICES = 500
VA_DAYS = 7
#: Bank code -> (name, VA prefix, merchantinfo product code). BI clearing codes (RESEARCH A6).
BANKS: dict[str, tuple[str, str, str]] = {
    "008": ("Mandiri", "8930", "MANDIRIATM"),
    "009": ("BNI", "8808", "BNIATM"),
    "014": ("BCA", "3901", "BCAATM"),
    "002": ("BRI", "2626", "BRIATM"),
}
#: English key, Indonesian alias (the two pages disagree; accept either), label in messages.
FIELDS = (
    ("member_code", None, "Member Code"),
    ("amount", None, "Amount"),
    ("total_amount", None, "Total Amount"),
    ("number_of_installment", "jumlah_cicilan", "Number Of Installment"),
    ("installment_amount", "amount_cicilan", "Installment Amount"),
    ("billing_date", "tanggal_penagihan", "Billing Date"),
)
OPTIONAL_ALIASES = (("balance_payment_amount", "pelunasan_amount"),)
#: Normalized state -> the provider word the client's STATUS_MAP reads (see gateways/espay.py).
PROVIDER_STATUS = {
    st.OPEN: "LISTED", st.PAID: "S", st.PARTIALLY_PAID: "S", st.PROCESSING: "IP", st.FAILED: "F",
    st.EXPIRED: "EX", st.CANCELLED: "CLOSED",
}


def _signature(*parts: object) -> str:
    # The sandbox keeps its own copy of the recipe so a client bug cannot verify itself.
    return hashlib.sha256(("##" + "##".join(str(p) for p in parts) + "##").upper().encode()).hexdigest()


def _digits(*parts: str, n: int) -> str:
    number = int(hashlib.sha256("|".join(parts).encode()).hexdigest(), 16)
    return str(number % 10**n).zfill(n)


def _positive(value: Any) -> Decimal | None:
    try:
        number = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() and number > 0 else None


class Sandbox(ProviderSandbox):
    name = "espay"

    def reset(self) -> None:
        #: comm_code -> doc_no -> the listed invoice (dict; see `_list`).
        self.listed: dict[str, dict[str, dict[str, Any]]] = {}
        #: One summary per sendinvoice call (the core's request log keeps bodies only up to a size).
        self.calls: deque[dict[str, Any]] = deque(maxlen=500)

    def routes(self):
        return [
            ("POST", r"/rest/virtualaccount/sendinvoice", self.send_invoice),
            ("POST", r"/rest/merchant/merchantinfo", self.merchant_info),
            ("POST", r"/rest/merchant/status", self.check_status),
        ]

    def auth_failure(self) -> Response:
        return Response(200, {"rq_uuid": "", "rs_datetime": self._now(), "error_code": "0101",
                              "error_message": "Invalid Signature"})

    # -- helpers -----------------------------------------------------------------------------
    def _now(self) -> str:
        return datetime.now(JAKARTA).strftime(DT)

    @staticmethod
    def _fields(request: Request) -> tuple[dict[str, Any], str]:
        """Form body (what the client sends) or a JSON body (the other reading of the docs)."""
        content_type = request.headers.get("content-type", "")
        if "json" in content_type or request.body.lstrip().startswith(b"{"):
            try:
                data = request.json()
            except ValueError:
                return {}, "json"
            return (data if isinstance(data, dict) else {}), "json"
        return request.form(), "form"

    # -- sendinvoice -------------------------------------------------------------------------
    def send_invoice(self, request: Request, match) -> Response:
        fields, encoding = self._fields(request)
        rq_uuid = str(fields.get("rq_uuid") or "")
        call: dict[str, Any] = {"rq_uuid": rq_uuid, "encoding": encoding, "comm_code": fields.get("comm_code"),
                                "total_invoices": fields.get("total_invoices"), "count": None,
                                "signature_valid": False, "error_code": None}

        def refuse(code: str, message: str) -> Response:
            call["error_code"] = code
            with self.lock:
                self.calls.append(call)
            return Response(200, {"rq_uuid": rq_uuid, "rs_datetime": self._now(), "error_code": code,
                                  "error_message": message})

        for name in ("rq_uuid", "rq_datetime", "signature", "comm_code", "ccy", "invoices", "total_invoices"):
            if str(fields.get(name) or "").strip() == "":
                return refuse("0001", f"Mandatory field left empty = {name}")
        comm_code = str(fields["comm_code"])
        if comm_code != self.credentials["comm_code"]:
            return refuse("0102", "Invalid Community Code")
        expected = _signature(rq_uuid, fields["rq_datetime"], comm_code, self.credentials["signature_key"],
                              "SendInvoice")
        call["signature_valid"] = str(fields["signature"]).strip().lower() == expected
        if not call["signature_valid"]:
            return refuse("0101", "Invalid Signature")
        try:
            rq_at = datetime.strptime(str(fields["rq_datetime"]), DT).replace(tzinfo=JAKARTA)
        except ValueError:
            return refuse("0106", "Invalid format = rq_datetime")
        invoices = fields["invoices"]
        if isinstance(invoices, str):
            try:
                invoices = json.loads(invoices, parse_float=Decimal)
            except ValueError:
                invoices = None
        if not isinstance(invoices, dict) or not invoices:
            return refuse("0107", "Invalid format = invoices")
        call["count"] = len(invoices)
        if str(fields["total_invoices"]).strip() != str(len(invoices)):
            return refuse("0104", "Total invoices does not match")
        if len(invoices) > MAX_INVOICES:
            return refuse("0105", "Maximum 500 invoices")
        if str(fields["ccy"]).upper() != "IDR":
            return refuse("0108", "Invalid currency")

        results: dict[str, dict[str, Any]] = {}
        with self.lock:
            listed = self.listed.setdefault(comm_code, {})
            for doc_no, line in invoices.items():
                results[str(doc_no)] = self._one(listed, comm_code, str(doc_no), line, rq_at)
            call["error_code"] = "0000"
            self.calls.append(call)
        ok = {k: v for k, v in results.items() if v["error_code"] == "0000"}
        errors = {k: v for k, v in results.items() if v["error_code"] != "0000"}
        return Response(200, {
            "rq_uuid": rq_uuid,
            "rs_datetime": self._now(),
            "error_code": "0000",
            "error_message": "Success",
            "invoices": results,
            # An empty block goes as [] (what PHP's json_encode makes of an empty array): the
            # client must take that as "none", whatever Espay's server really does.
            "invoices_success": ok or [],
            "invoices_error": errors or [],
            "total_invoice": str(len(results)),
        })

    def _one(self, listed: dict[str, dict[str, Any]], comm_code: str, doc_no: str, line: Any,
             rq_at: datetime) -> dict[str, Any]:
        def error(code: str, message: str) -> dict[str, Any]:
            return {"error_code": code, "error_msg": message, "doc_ref_no": ""}

        if not isinstance(line, dict):
            return error("0006", "Invalid format = Invoice")
        values: dict[str, Any] = {}
        for key, alias, label in FIELDS:
            value = line.get(key, line.get(alias) if alias else None)
            if value is None or str(value).strip() == "":
                return error("0001", f"Mandatory field left empty = {label}")
            values[key] = value
        for key, alias in OPTIONAL_ALIASES:
            values[key] = line.get(key, line.get(alias))
        amounts = {k: _positive(values[k]) for k in ("amount", "total_amount", "installment_amount")}
        for key, label in (("amount", "Amount"), ("total_amount", "Total Amount"),
                           ("installment_amount", "Installment Amount")):
            if amounts[key] is None:
                return error("0003", f"Invalid amount = {label}")
        installments = str(values["number_of_installment"]).strip()
        if not installments.isdigit() or int(installments) < 1:
            return error("0003", "Invalid amount = Number Of Installment")
        day = str(values["billing_date"]).strip()
        if not (day.isdigit() and len(day) <= 2 and 1 <= int(day) <= 31):
            return error("0004", "Invalid format = Billing Date")
        if str(values["member_code"]).upper().startswith("REJECT"):
            return error("0005", "Member rejected")
        if doc_no in listed:
            return error("0002", "Data already listed = Document No")

        description = str(line.get("description") or "")
        expires = datetime.combine(rq_at.date() + timedelta(days=VA_DAYS), time(23, 59, 59), JAKARTA)
        list_va = {
            code: {"bank_code": code, "va_number": prefix + _digits(comm_code, doc_no, code, n=12),
                   "expired": expires.strftime(DT), "description": description}
            for code, (_name, prefix, _product) in BANKS.items()
        }
        doc_ref_no = "DOC" + _digits(comm_code, doc_no, n=10)
        total = amounts["total_amount"]
        listed[doc_no] = {
            "comm_code": comm_code, "doc_no": doc_no, "doc_ref_no": doc_ref_no,
            "member_code": str(values["member_code"]), "member_name": str(line.get("member_name") or ""),
            "amount": total, "outstanding": total, "paid_amount": Decimal(0), "description": description,
            "status": st.OPEN, "listed_at": rq_at, "expires_at": expires, "paid_at": None,
            "updated_at": datetime.now(timezone.utc), "list_va": list_va,
        }
        return {"error_code": "0000", "error_msg": "success", "doc_ref_no": doc_ref_no, "list_va": list_va}

    # -- merchantinfo ------------------------------------------------------------------------
    def merchant_info(self, request: Request, match) -> Response:
        fields, _ = self._fields(request)
        key = str(fields.get("key") or "")
        if key not in (self.credentials["signature_key"], self.credentials.get("api_key")):
            return Response(200, {"error_code": "0103", "error_message": "Invalid Merchant Key"})
        return Response(200, {"error_code": "0000", "error_message": "", "data": [
            {"bankCode": code, "productCode": product, "productName": f"{name.upper()} VA"}
            for code, (name, _prefix, product) in BANKS.items()
        ]})

    def check_status(self, request: Request, match) -> Response:
        """Check Payment Status (RESEARCH A4/A5): form `uuid`/`rq_uuid`, `rq_datetime`,
        `comm_code`, `order_id`, `signature` = `##KEY##rq_datetime##order_id##CHECKSTATUS##`.
        Answers the order's `tx_status` (S once a payment succeeded, IP while nothing is paid, EX
        expired, as documented) with `amount` (the order total), `paid_amount` (paid so far) and
        `payment_datetime` (the latest payment); an unknown order is error_code 0014."""
        fields, _ = self._fields(request)
        rq_uuid = str(fields.get("rq_uuid") or fields.get("uuid") or "")
        rq_datetime, order_id = str(fields.get("rq_datetime") or ""), str(fields.get("order_id") or "")
        comm_code = str(fields.get("comm_code") or "")
        base = {"rq_uuid": rq_uuid, "rs_datetime": self._now(), "order_id": order_id}
        if not (rq_uuid and rq_datetime and order_id and comm_code):
            return Response(200, {**base, "error_code": "0001", "error_message": "Invalid request"})
        expected = _signature(self.credentials["signature_key"], rq_datetime, order_id, "CHECKSTATUS")
        if not hmac.compare_digest(str(fields.get("signature") or "").lower(), expected):
            return Response(200, {**base, "error_code": "0101", "error_message": "Invalid Signature"})
        with self.lock:
            inv = self.listed.get(comm_code, {}).get(order_id)
            if inv is None:
                return Response(200, {**base, "error_code": "0014", "error_message": "Order not found"})
            paid = inv["paid_amount"] or Decimal(0)
            tx_status = "S" if paid > 0 else "EX" if inv["status"] == st.EXPIRED else "IP"
            when = inv["paid_at"].astimezone(JAKARTA).strftime(DT) if inv["paid_at"] and paid > 0 else ""
            return Response(200, {**base, "error_code": "0000", "error_message": "Success", "comm_code": comm_code,
                                  "ccy": "IDR", "amount": f"{inv['amount']:.2f}", "paid_amount": f"{paid:.2f}",
                                  "tx_status": tx_status, "payment_datetime": when})

    # -- ground truth, changes and notifications ---------------------------------------------
    def _find(self, external_id: str) -> dict[str, Any]:
        for docs in self.listed.values():
            if external_id in docs:
                return docs[external_id]
        raise KeyError(external_id)

    def truth(self):
        with self.lock:
            rows = [inv for docs in self.listed.values() for inv in docs.values()]
        for inv in rows:
            yield {
                "external_id": inv["doc_no"], "number": inv["doc_no"], "status": inv["status"],
                "provider_status": PROVIDER_STATUS[inv["status"]], "currency": "IDR",
                "amount": inv["amount"], "outstanding": inv["outstanding"], "paid_amount": inv["paid_amount"],
                "customer_ref": inv["member_code"], "customer_name": inv["member_name"],
                "issued_at": inv["listed_at"], "due_at": None, "expires_at": inv["expires_at"],
                "paid_at": inv["paid_at"], "updated_at": inv["updated_at"], "doc_ref_no": inv["doc_ref_no"],
                "comm_code": inv["comm_code"],
                "vas": {code: va["va_number"] for code, va in inv["list_va"].items()},
            }

    def mutate(self, external_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Normalized changes (status, outstanding, paid_at), kept consistent with the amount."""
        with self.lock:
            inv = self._find(external_id)
            amount = inv["amount"]
            status = changes.get("status")
            outstanding = changes.get("outstanding")
            if outstanding is not None:
                outstanding = Decimal(str(outstanding))
                if not 0 <= outstanding <= amount:
                    raise ValueError(f"outstanding must be between 0 and {amount}")
                if status is None:
                    status = st.PAID if outstanding == 0 else st.OPEN if outstanding == amount else st.PARTIALLY_PAID
            status = status or inv["status"]
            if status not in PROVIDER_STATUS:
                raise ValueError(f"espay sandbox cannot put an invoice in state {status!r}")
            if status == st.PAID:
                outstanding = Decimal(0)
            elif status == st.PARTIALLY_PAID:
                outstanding = outstanding if outstanding is not None and 0 < outstanding < amount else \
                    (amount / 2).quantize(Decimal(1))
            elif outstanding is None:
                outstanding = amount if status != inv["status"] else inv["outstanding"]
            paid_at = changes.get("paid_at")
            if isinstance(paid_at, str):
                paid_at = datetime.fromisoformat(paid_at.replace("Z", "+00:00"))
            if outstanding < amount:
                paid_at = paid_at or inv["paid_at"] or datetime.now(timezone.utc)
            else:
                paid_at = None
            inv.update(status=status, outstanding=outstanding, paid_amount=amount - outstanding, paid_at=paid_at,
                       updated_at=datetime.now(timezone.utc))
            return {"external_id": external_id, "status": status, "provider_status": PROVIDER_STATUS[status],
                    "outstanding": outstanding, "paid_amount": amount - outstanding, "paid_at": paid_at}

    def payment_notification(self, external_id: str, *, bank_code: str = "014") -> dict[str, str]:
        """The form Espay would POST to the merchant when this invoice is paid (RESEARCH A4/A5:
        paymentnotification.php). `order_id` = doc_no is an INFERENCE for VA invoices. Kept here
        for the webhook piece, which delivers it."""
        with self.lock:
            inv = self._find(external_id)
            paid = inv["paid_amount"] or inv["amount"]
            when = (inv["paid_at"] or datetime.now(timezone.utc)).astimezone(JAKARTA).strftime(DT)
            va = inv["list_va"].get(bank_code) or next(iter(inv["list_va"].values()))
            return {
                "rq_uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"espay-paid:{inv['comm_code']}:{external_id}:{when}")),
                "rq_datetime": when,
                "signature": _signature(self.credentials["signature_key"], when, external_id, "PAYMENTREPORT"),
                "member_id": inv["member_code"],
                "comm_code": inv["comm_code"],
                "order_id": external_id,
                "ccy": "IDR",
                "amount": f"{paid:.2f}",
                "debit_from_bank": va["bank_code"],
                "credit_to_bank": va["bank_code"],
                "credit_to": va["va_number"],
                "product_code": BANKS[va["bank_code"]][2],
            }

    # -- POST /_sandbox/notify -------------------------------------------------------------------
    DEFAULT_EVENT = "paid"

    def notification(self, external_id: str, *, event: str = "paid", older: bool = False,
                     bad_signature: bool = False, amount: Decimal | None = None, at: datetime | None = None,
                     bank_code: str = "014") -> tuple[dict[str, str], bytes]:
        """One payment report as a form POST (the older docs' encoding; the receiver takes JSON
        too), with a fresh rq_uuid: `amount` (default: the invoice amount) paid at `at` (default
        now; `older` a minute earlier)."""
        with self.lock:
            inv = self._find(external_id)
            when = (at or datetime.now(timezone.utc)) - (timedelta(minutes=1) if older else timedelta(0))
            stamp = when.astimezone(JAKARTA).strftime(DT)
            va = inv["list_va"].get(bank_code) or next(iter(inv["list_va"].values()))
            key = self.credentials["signature_key"] + ("-wrong" if bad_signature else "")
            form = {
                "rq_uuid": str(uuid.uuid4()), "rq_datetime": stamp,
                "signature": _signature(key, stamp, external_id, "PAYMENTREPORT"),
                "member_id": inv["member_code"], "comm_code": inv["comm_code"], "order_id": external_id,
                "ccy": "IDR", "amount": f"{(amount if amount is not None else inv['amount']):.2f}",
                "debit_from_bank": va["bank_code"], "credit_to_bank": va["bank_code"], "credit_to": va["va_number"],
                "product_code": BANKS[va["bank_code"]][2],
            }
        return {"Content-Type": "application/x-www-form-urlencoded"}, urlencode(form).encode()

    def notifications(self, external_id: str, *, event: str | None = None, bad_signature: bool = False,
                      out_of_order: bool = False) -> list[tuple[dict[str, str], bytes]]:
        """Espay reports payments, not states: the sandbox pays the invoice in full and reports
        it; `out_of_order` pays it in two instalments and reports the later one first."""
        if (event or "paid") != "paid":
            raise ValueError("Espay notifies payments only: event must be 'paid'")
        with self.lock:
            self.mutate(external_id, {"status": st.PAID})
            amount = self._find(external_id)["amount"]
            if not out_of_order:
                return [self.notification(external_id, bad_signature=bad_signature)]
            first = (amount / 2).quantize(Decimal(1))
            now = datetime.now(timezone.utc)
            return [self.notification(external_id, amount=amount - first, at=now, bad_signature=bad_signature),
                    self.notification(external_id, amount=first, at=now, older=True, bad_signature=bad_signature)]
