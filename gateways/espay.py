"""Espay: send invoice batches and get virtual-account (VA) numbers back.

Espay is arbook's *push* gateway. `send_invoices()` posts up to 500 invoices to
`/rest/virtualaccount/sendinvoice` and returns, per document number, either the VA numbers per
bank (with their expiry) or Espay's error code. Espay has no invoice *list* API: its invoices come
from our own uploads and from Espay's payment notifications, so `iter_pages()` yields nothing.

Facts: /work/shared/gateway-docs/espay-send-invoice.txt and RESEARCH.md section A.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qsl

from . import notify
from . import status as st
from .base import JAKARTA, GatewayClient, to_datetime, to_decimal
from .errors import AuthError, BadResponseError
from .fields import Field
from .models import Page, RemoteInvoice
from .numbers import NotANumber, parse_decimal

logger = logging.getLogger("gateways.espay")

#: Espay's own words -> normalized state. Espay has no invoice listing, so there is no invoice
#: status field as such. The values come from Check Payment Status `tx_status` (RESEARCH A5:
#: S, F, SP, IP, EX, WC), plus two labels of arbook's own for the states Espay reports through
#: call results rather than a field: LISTED = accepted by sendinvoice (error_code 0000, VA issued,
#: unpaid), CLOSED = closed through Espay's close-invoice call.
STATUS_MAP: Mapping[str, str] = {
    "LISTED": st.OPEN,
    "S": st.PAID,
    "F": st.FAILED,
    "SP": st.PROCESSING,  # suspect: the bank has not confirmed yet
    "IP": st.PROCESSING,
    "WC": st.PROCESSING,  # waiting correction
    "EX": st.EXPIRED,
    "CLOSED": st.CANCELLED,
}

DEFAULT_BASE_URL = "https://sandbox-api.espay.id"  # production: https://api.espay.id
SENDINVOICE_PATH = "/rest/virtualaccount/sendinvoice"
MERCHANTINFO_PATH = "/rest/merchant/merchantinfo"
STATUS_PATH = "/rest/merchant/status"
#: error_code of a check-status answer for an order Espay does not know (the debit host's "14
#: invalid order"; the legacy REST list is undocumented, RESEARCH open question 1).
UNKNOWN_ORDER = "0014"
MAX_INVOICES = 500
DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # always Asia/Jakarta, no offset on the wire

SUCCESS = "0000"
#: Per-invoice code for "Data already listed = Document No": the document was sent before (e.g.
#: the first try of a retried batch did reach Espay); the app treats it as "already sent".
ALREADY_LISTED = "0002"
#: Our own code for a document we sent that the response does not mention at all.
MISSING = "MISSING"

#: Request-level codes that mean "the credential or signature is wrong". Espay publishes no full
#: list of its legacy 4-digit codes (RESEARCH open question 1); these are the sandbox's choices
#: (0101 invalid signature, 0102 unknown community code, 0103 invalid merchant key), and the
#: message text is checked as well so a real Espay wording is caught too.
AUTH_CODES = frozenset({"0101", "0102", "0103"})
_AUTH_WORDS = ("signature", "unauthori", "invalid key", "invalid merchant", "community code", "comm_code")


# -- signatures (RESEARCH A1, A4) ------------------------------------------------------------

def signature(*parts: object) -> str:
    """Espay's recipe: `##p1##p2##...##`, uppercased, SHA-256, lowercase hex."""
    text = "##" + "##".join(str(p) for p in parts) + "##"
    return hashlib.sha256(text.upper().encode("utf-8")).hexdigest()


def sendinvoice_signature(rq_uuid: str, rq_datetime: str, comm_code: str, key: str) -> str:
    """VA family (signatureva.php): key is the 4th part, service name `SendInvoice` last."""
    return signature(rq_uuid, rq_datetime, comm_code, key, "SendInvoice")


def paymentreport_signature(key: str, rq_datetime: str, order_id: str) -> str:
    """The signature Espay puts on its payment notification to the merchant."""
    return signature(key, rq_datetime, order_id, "PAYMENTREPORT")


def paymentreport_reply_signature(key: str, rq_uuid: str, rs_datetime: str, error_code: str) -> str:
    """The signature of the merchant's reply to a payment notification."""
    return signature(key, rq_uuid, rs_datetime, error_code, "PAYMENTREPORT-RS")


def checkstatus_signature(key: str, rq_datetime: str, order_id: str) -> str:
    """Check Payment Status (RESEARCH A4): `##KEY##rq_datetime##order_id##CHECKSTATUS##`."""
    return signature(key, rq_datetime, order_id, "CHECKSTATUS")


def signatures_match(expected: str, given: str) -> bool:
    """Constant-time comparison; hex case does not matter."""
    return hmac.compare_digest(expected.lower().encode(), str(given or "").strip().lower().encode())


def format_datetime(moment: datetime) -> str:
    """`YYYY-MM-DD HH:MM:SS` in Asia/Jakarta; a naive value is taken to be Jakarta time already."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(JAKARTA)
    return moment.strftime(DATETIME_FORMAT)


# -- request / result shapes -----------------------------------------------------------------

def _money(value: Any, name: str) -> Decimal:
    if isinstance(value, float):
        raise TypeError(f"{name} must be a Decimal, int or str, never a float")
    try:
        number = parse_decimal(value)
    except NotANumber:
        raise ValueError(f"{name} is not a number: {value!r}") from None
    if number is None:
        raise ValueError(f"{name} is not a number: {value!r}")
    return number


@dataclass(frozen=True)
class EspayInvoice:
    """One invoice line for sendinvoice. `doc_no` is our document number (the key Espay uses).

    Espay validates the line itself (and answers per line), so the client only normalizes:
    money becomes Decimal (a float is refused), `billing_date` becomes a 2-digit day of month.
    """

    doc_no: str
    member_code: str
    amount: Decimal
    billing_date: str | int
    total_amount: Decimal | None = None  # default: amount
    number_of_installment: int = 1
    installment_amount: Decimal | None = None  # default: total_amount (one installment)
    member_name: str = ""
    balance_payment_amount: Decimal | None = None
    description: str = ""

    def __post_init__(self) -> None:
        amount = _money(self.amount, "amount")
        total = amount if self.total_amount is None else _money(self.total_amount, "total_amount")
        installments = int(self.number_of_installment)
        if self.installment_amount is None:
            if installments != 1:
                raise ValueError(f"{self.doc_no}: installment_amount is needed with {installments} installments")
            per = total
        else:
            per = _money(self.installment_amount, "installment_amount")
        balance = None if self.balance_payment_amount is None else _money(
            self.balance_payment_amount, "balance_payment_amount")
        day = str(self.billing_date).strip()
        if day.isdigit() and 1 <= int(day) <= 31:
            day = f"{int(day):02d}"  # "5" and 5 -> "05"; anything else goes as is and Espay says why
        for name, value in (("amount", amount), ("total_amount", total), ("number_of_installment", installments),
                            ("installment_amount", per), ("balance_payment_amount", balance),
                            ("billing_date", day), ("doc_no", str(self.doc_no).strip())):
            object.__setattr__(self, name, value)

    def wire(self) -> dict[str, Any]:
        """The JSON value under this doc_no, with the English keys of the English page.

        The Indonesian page names four fields differently (jumlah_cicilan, amount_cicilan,
        pelunasan_amount, tanggal_penagihan; RESEARCH A2). We send the English set, which the
        English page documents for this endpoint; the sandbox accepts both. The types follow
        the documented example: amount/total_amount as JSON numbers, the rest as strings.
        """
        line: dict[str, Any] = {"member_code": self.member_code}
        if self.member_name:
            line["member_name"] = self.member_name
        line["amount"] = _json_number(self.amount)
        line["total_amount"] = _json_number(self.total_amount)
        line["number_of_installment"] = str(self.number_of_installment)
        line["installment_amount"] = _plain(self.installment_amount)
        if self.balance_payment_amount is not None:
            line["balance_payment_amount"] = _plain(self.balance_payment_amount)
        if self.description:
            line["description"] = self.description
        line["billing_date"] = self.billing_date
        return line


def _plain(value: Decimal) -> str:
    """Decimal as plain digits (no exponent); integral values without a fraction."""
    return str(int(value)) if value == value.to_integral_value() else format(value, "f")


def _json_number(value: Decimal) -> int | str:
    # The stdlib json module cannot write a Decimal as a number without going through float, so
    # integral amounts (every IDR amount) go as JSON integers, as in the documented example, and
    # the rare fractional amount goes as a decimal string rather than as a lossy float.
    return int(value) if value == value.to_integral_value() else format(value, "f")


@dataclass(frozen=True)
class VirtualAccount:
    bank_code: str
    va_number: str
    expires_at: datetime | None
    description: str = ""


@dataclass(frozen=True)
class InvoiceResult:
    """What Espay said about one doc_no: success (doc_ref_no + VAs) or an error code/message."""

    doc_no: str
    code: str
    message: str = ""
    doc_ref_no: str = ""
    vas: tuple[VirtualAccount, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def ok(self) -> bool:
        return self.code == SUCCESS

    @property
    def already_listed(self) -> bool:
        return self.code == ALREADY_LISTED

    @property
    def missing(self) -> bool:
        return self.code == MISSING


@dataclass(frozen=True)
class SendResult:
    """One sendinvoice call: the request-level code and one `InvoiceResult` per doc_no sent,
    in the order sent (every doc_no sent is present, see `MISSING`)."""

    rq_uuid: str
    error_code: str
    error_message: str
    results: Mapping[str, InvoiceResult]
    rs_datetime: datetime | None = None
    sent_at: datetime | None = None
    total_invoice: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def succeeded(self) -> list[InvoiceResult]:
        return [r for r in self.results.values() if r.ok]

    @property
    def failed(self) -> list[InvoiceResult]:
        return [r for r in self.results.values() if not r.ok]

    @property
    def ok(self) -> bool:
        return not self.failed


@dataclass(frozen=True)
class PaymentStatus:
    """What Espay's Check Payment Status says of one order (our doc_no): the provider's own word,
    which a payment notification's unsigned fields (amount, tx_status) are checked against.

    `amount` is the order's total, `paid_amount` what is paid so far (instalments summed),
    `paid_at` the latest payment's time (Jakarta)."""

    order_id: str
    tx_status: str
    status: str
    amount: Decimal | None
    paid_amount: Decimal | None
    currency: str
    paid_at: datetime | None


# -- the client ------------------------------------------------------------------------------

class Client(GatewayClient):
    """Espay VA invoices for one community code (`options["comm_code"]`)."""

    provider = "espay"
    default_base_url = DEFAULT_BASE_URL
    required_secrets = (("signature_key",),)
    secret_fields = (
        Field("signature_key", "Espay signature key (signs every request and checks payment reports)."),
        Field("api_key", "Espay merchant key for the connection check (Inquiry Merchant Info); blank = the "
              "signature key."),
    )
    option_fields = (
        Field("comm_code", "Espay community code (comm_code) of this merchant.", required=True),
        Field("ccy", "Currency of the invoices sent.", default="IDR"),
    )
    STATUS_MAP = STATUS_MAP
    lists_invoices = False

    def __init__(self, *, secrets: Mapping[str, Any], options: Mapping[str, Any] | None = None, **kwargs: Any):
        # DESIGN puts comm_code in options; the sandbox credentials also carry it among the
        # secrets, so accept it there as a fallback.
        options = dict(options or {})
        if not str(options.get("comm_code") or "").strip() and (secrets or {}).get("comm_code"):
            options["comm_code"] = secrets["comm_code"]
        super().__init__(secrets=secrets, options=options, **kwargs)
        self.comm_code = self.settings["comm_code"]
        self.ccy = self.settings["ccy"].upper()

    # -- the two GatewayClient calls ----------------------------------------------------------
    def iter_pages(self, *, since: datetime | None = None, resume: str | None = None) -> Iterator[Page]:
        """Nothing to read: Espay has no invoice list API. Espay invoices enter arbook through
        our own batch uploads (`send_invoices`) and Espay's payment notifications."""
        return
        yield  # pragma: no cover - makes this a generator

    def check_connection(self) -> str:
        """Inquiry Merchant Info (RESEARCH A6): a read-only, authenticated call that lists the
        banks enabled for the merchant. sendinvoice has no harmless form (an empty batch is
        invalid), so this is the cheap check.

        The docs call the form field `key` the "Merchant Key"/"API key"; the credential contract
        has only `signature_key`, so that is sent unless the credential also holds an `api_key`.
        """
        key = str(self.secrets.get("api_key") or self.secrets["signature_key"])
        # An inquiry changes nothing at Espay, so retrying it is safe (unlike sendinvoice).
        data = self.http.request_json("POST", MERCHANTINFO_PATH, data={"key": key}, idempotent=True)
        if not isinstance(data, dict):
            raise BadResponseError("espay: merchantinfo answered with something other than an object",
                                   provider=self.provider)
        code = str(data.get("error_code") or "")
        if code != SUCCESS:
            raise self._request_error("merchantinfo", code, data.get("error_message"))
        items = data.get("data") or []
        banks = sorted({str(i.get("bankCode") or "") for i in items if isinstance(i, dict)} - {""})
        if not banks:
            return "Connected: no payment channels are enabled for this merchant yet"
        return f"Connected: {len(banks)} bank{'s' if len(banks) != 1 else ''} enabled ({', '.join(banks)})"

    # -- checking a payment --------------------------------------------------------------------
    def check_status(self, order_id: str, *, rq_uuid: str) -> PaymentStatus | None:
        """Check Payment Status (`/rest/merchant/status`, RESEARCH A4/A5): a form POST of
        `uuid`/`rq_uuid`, `rq_datetime`, `comm_code`, `order_id` and the CHECKSTATUS signature.
        Read-only at Espay, so retried like a GET. None when Espay does not know the order.

        The answer's `tx_status` is documented (S, F, SP, IP, EX, WC); its amount fields are not
        spelled out, so `amount` (the order total) and `paid_amount` (paid so far; when absent, the
        whole amount if `tx_status` is S, else nothing) are read as the sandbox serves them."""
        key = str(self.secrets["signature_key"])
        rq_datetime = format_datetime(self.now())
        form = {"uuid": rq_uuid, "rq_uuid": rq_uuid, "rq_datetime": rq_datetime, "comm_code": self.comm_code,
                "order_id": order_id, "signature": checkstatus_signature(key, rq_datetime, order_id)}
        data = self.http.request_json("POST", STATUS_PATH, data=form, idempotent=True)
        if not isinstance(data, dict):
            raise BadResponseError("espay: check status answered with something other than an object",
                                   provider=self.provider)
        code = str(data.get("error_code") or "")
        if code == UNKNOWN_ORDER:
            return None
        if code != SUCCESS:
            raise self._request_error("check status", code, data.get("error_message"))
        if str(data.get("order_id") or "").strip() != order_id:
            raise BadResponseError("espay: check status answered for another order", provider=self.provider)
        tx_status = str(data.get("tx_status") or "").strip().upper()
        if not tx_status:
            raise BadResponseError("espay: check status answer has no tx_status", provider=self.provider)
        amount = to_decimal(data.get("amount"), field="amount", provider=self.provider)
        paid = to_decimal(data.get("paid_amount"), field="paid_amount", provider=self.provider)
        if paid is None:
            paid = amount if tx_status == "S" else Decimal(0)
        status = self.map_status(tx_status)
        if amount is not None and paid is not None and amount > 0:  # the amounts decide how much is paid
            if paid >= amount:
                status = st.PAID
            elif paid > 0:
                status = st.PARTIALLY_PAID
            elif status == st.PAID:
                status = st.OPEN
        return PaymentStatus(order_id=order_id, tx_status=tx_status, status=status, amount=amount, paid_amount=paid,
                             currency=str(data.get("ccy") or "IDR").upper()[:3],
                             paid_at=self._when(data.get("payment_datetime"), "payment_datetime"))

    # -- sending ------------------------------------------------------------------------------
    def send_invoices(self, *, rq_uuid: str, invoices: Sequence[EspayInvoice],
                      rq_datetime: datetime | None = None) -> SendResult:
        """POST one batch (1..500 invoices) and return the per-doc_no outcome.

        `rq_uuid` comes from the caller and must be reused when the same batch is retried after
        an `OutcomeUnknownError` (a read timeout after sending). The POST itself is never retried
        here: a blind retry could list invoices twice. A retried batch answers 0002 ("Data
        already listed") for the lines the first try already listed.
        """
        rq_uuid = str(rq_uuid or "").strip()
        if not rq_uuid:
            raise ValueError("espay: rq_uuid is required (reuse it when retrying the same batch)")
        if len(rq_uuid) > 255:
            raise ValueError("espay: rq_uuid is longer than 255 characters")
        count = len(invoices)
        if count == 0:
            raise ValueError("espay: a sendinvoice batch needs at least one invoice")
        if count > MAX_INVOICES:
            raise ValueError(f"espay: {count} invoices in one call; Espay takes at most {MAX_INVOICES}")
        lines: dict[str, dict[str, Any]] = {}
        for invoice in invoices:
            if not invoice.doc_no:
                raise ValueError("espay: every invoice needs a doc_no")
            if invoice.doc_no in lines:  # invoices is a JSON object keyed by doc_no
                raise ValueError(f"espay: doc_no {invoice.doc_no!r} appears twice in one batch")
            lines[invoice.doc_no] = invoice.wire()

        sent_at = rq_datetime or self.now()
        if sent_at.tzinfo is None:
            sent_at = sent_at.replace(tzinfo=JAKARTA)
        sent_at = sent_at.astimezone(JAKARTA).replace(microsecond=0)  # exactly what is signed
        when = format_datetime(sent_at)
        sig = sendinvoice_signature(rq_uuid, when, self.comm_code, str(self.secrets["signature_key"]))
        self.http.add_secret(sig)
        # Form POST with `invoices` as a JSON string (RESEARCH A3, INFERENCE: Espay's legacy REST
        # services are form-encoded and this page types the field "JSON"); the sandbox accepts a
        # JSON body as well, should Espay confirm that instead.
        form = {
            "rq_uuid": rq_uuid,
            "rq_datetime": when,
            "signature": sig,
            "comm_code": self.comm_code,
            "ccy": self.ccy,
            "invoices": json.dumps(lines, separators=(",", ":"), ensure_ascii=False),
            "total_invoices": str(count),
        }
        data = self.http.request_json("POST", SENDINVOICE_PATH, data=form)
        result = self.parse_response(data, doc_nos=list(lines), sent_at=sent_at)
        logger.info("provider=espay sendinvoice rq_uuid=%s sent=%d ok=%d failed=%d",
                    rq_uuid, count, len(result.succeeded), len(result.failed))
        return result

    def parse_response(self, data: Any, *, doc_nos: Sequence[str], sent_at: datetime | None = None) -> SendResult:
        """Turn a sendinvoice answer into a `SendResult` accounting for every doc_no sent.

        `invoices`, `invoices_success` and `invoices_error` are merged per doc_no (the documented
        example repeats entries across them, even an error inside `invoices_success`): the code
        decides, not the container, and a non-0000 entry wins over a 0000 one.
        """
        if not isinstance(data, dict):
            raise BadResponseError("espay: sendinvoice answered with something other than an object",
                                   provider=self.provider)
        code = str(data.get("error_code") or "")
        message = self.http.mask(str(data.get("error_message") or ""))
        entries: dict[str, list[dict[str, Any]]] = {}
        for container in ("invoices", "invoices_success", "invoices_error"):
            block = data.get(container)
            # An empty block may come as [] or null (PHP-style encoders); both mean "none".
            if not isinstance(block, dict):
                continue
            for doc_no, entry in block.items():
                if isinstance(entry, dict):
                    entries.setdefault(str(doc_no), []).append(entry)
        if code != SUCCESS and not entries:
            raise self._request_error("sendinvoice", code, data.get("error_message"))

        results: dict[str, InvoiceResult] = {}
        for doc_no in doc_nos:
            found = entries.get(doc_no)
            results[doc_no] = self._line(doc_no, found) if found else InvoiceResult(
                doc_no=doc_no, code=MISSING, message="missing from response")
        extra = set(entries) - set(results)
        if extra:
            logger.warning("provider=espay sendinvoice answered for %d doc_no(s) that were not sent", len(extra))
        total = data.get("total_invoice")
        try:
            total_invoice = int(str(total).strip()) if total not in (None, "") else None
        except ValueError:
            total_invoice = None
        return SendResult(
            rq_uuid=str(data.get("rq_uuid") or ""),
            error_code=code,
            error_message=message,
            results=MappingProxyType(results),
            rs_datetime=self._when(data.get("rs_datetime"), "rs_datetime"),
            sent_at=sent_at,
            total_invoice=total_invoice,
            raw=data,
        )

    def _line(self, doc_no: str, entries: list[dict[str, Any]]) -> InvoiceResult:
        errors = [e for e in entries if str(e.get("error_code") or "") != SUCCESS]
        if errors:
            entry = errors[-1]  # invoices_error comes last and is the most specific
            return InvoiceResult(
                doc_no=doc_no,
                code=str(entry.get("error_code") or "") or "????",
                message=str(entry.get("error_msg") or entry.get("error_message") or ""),
                doc_ref_no=str(entry.get("doc_ref_no") or ""),
                raw=entry,
            )
        vas: dict[str, VirtualAccount] = {}
        doc_ref_no = ""
        for entry in entries:
            doc_ref_no = doc_ref_no or str(entry.get("doc_ref_no") or "")
            for va in self._vas(entry.get("list_va")):
                vas.setdefault(va.bank_code, va)
        entry = entries[0]
        return InvoiceResult(doc_no=doc_no, code=SUCCESS,
                             message=str(entry.get("error_msg") or entry.get("error_message") or "success"),
                             doc_ref_no=doc_ref_no, vas=tuple(vas.values()), raw=entry)

    def _vas(self, block: Any) -> Iterator[VirtualAccount]:
        """`list_va` is an object keyed by bank code; a list of the same items is accepted too."""
        if isinstance(block, dict):
            items = [(str(k), v) for k, v in block.items()]
        elif isinstance(block, list):
            items = [("", v) for v in block]
        else:
            return
        for key, item in items:
            if not isinstance(item, dict):
                continue
            number = str(item.get("va_number") or "").strip()
            if not number:
                continue
            yield VirtualAccount(
                bank_code=str(item.get("bank_code") or key),
                va_number=number,
                expires_at=self._when(item.get("expired"), "expired"),
                description=str(item.get("description") or ""),
            )

    def _when(self, value: Any, name: str) -> datetime | None:
        """Espay datetimes are naive Jakarta time. A garbled one is logged and kept as None: the
        batch *was* applied at Espay, so losing every VA number over one odd date would be worse."""
        try:
            return to_datetime(value, naive_tz=JAKARTA, field=name, provider=self.provider)
        except BadResponseError:
            logger.warning("provider=espay field %s is not a date/time; kept as unknown", name)
            return None

    def _request_error(self, call: str, code: str, message: Any) -> Exception:
        text = self.http.mask(str(message or "").strip())[:200]
        what = f"espay: {call} was refused (error_code {code or '?'}{': ' + text if text else ''})"
        lowered = text.lower()
        if code in AUTH_CODES or any(word in lowered for word in _AUTH_WORDS):
            return AuthError(what + "; check the signature key and community code", provider=self.provider)
        return BadResponseError(what, provider=self.provider)

    # -- for the app --------------------------------------------------------------------------
    def parse_invoice(self, invoice: EspayInvoice, line: InvoiceResult, *,
                      issued_at: datetime | None = None) -> RemoteInvoice:
        """The arbook `Invoice` view of a line Espay accepted: open, nothing paid yet."""
        if not line.ok:
            raise ValueError(f"espay: {line.doc_no} was not accepted ({line.code})")
        banks = ", ".join(va.bank_code for va in line.vas)
        return RemoteInvoice(
            external_id=invoice.doc_no,
            status=self.map_status("LISTED"),
            provider_status="LISTED",
            currency=self.ccy,
            number=invoice.doc_no,
            customer_name=invoice.member_name,
            customer_ref=invoice.member_code,
            amount=invoice.total_amount,
            outstanding=invoice.total_amount,
            paid_amount=Decimal(0),
            issued_at=issued_at,
            payment_channel=f"VA {banks}" if banks else "VA",
            raw={"doc_ref_no": line.doc_ref_no, **line.raw},
        )


# -- payment notifications (PAYMENTREPORT, RESEARCH A4/A5) ------------------------------------------

#: The report's fields that must be plain values when present.
NOTIFICATION_FIELDS = ("rq_uuid", "rq_datetime", "signature", "comm_code", "order_id", "amount", "ccy", "tx_status",
                       "member_id", "debit_from_bank", "credit_to_bank", "credit_to", "product_code", "password")


def notification_fields(content_type: str, body: bytes) -> dict[str, Any]:
    """A payment report's fields: JSON (the current docs) or a form (the older ones)."""
    if "json" in content_type or body.lstrip().startswith(b"{"):
        return notify.json_object(body)
    try:
        decoded = body.decode("utf-8")
    except UnicodeDecodeError:
        raise notify.NotificationRefused(notify.MALFORMED, "the body is not UTF-8") from None
    return dict(parse_qsl(decoded, keep_blank_values=True))


def parse_notification(*, headers: Mapping[str, str], content_type: str, body: bytes, secrets: Mapping[str, Any],
                       options: Mapping[str, Any], now: datetime | None = None) -> notify.RemoteNotification:
    """Espay notifies a successful payment of `amount` for `order_id` (our doc_no).

    The signature covers `rq_datetime` and `order_id` only: the amount and `tx_status` are claims,
    to be confirmed with Check Payment Status (`confirm`) before anything is applied; the event is
    identified by what is signed, so a replay with a fresh `rq_uuid` is the same event."""
    fields = notification_fields(content_type, body)
    notify.scalars(fields, NOTIFICATION_FIELDS)
    for name in ("rq_uuid", "rq_datetime", "signature", "comm_code", "order_id", "amount"):
        if not notify.text(fields.get(name)):
            raise notify.NotificationRefused(notify.MALFORMED, f"{name} is missing")
    comm_code = notify.text((options or {}).get("comm_code"))
    if comm_code and notify.text(fields["comm_code"]) != comm_code:
        raise notify.NotificationRefused(notify.BAD_SIGNATURE, "comm_code is not this credential's community code")
    key = notify.secret(secrets, "signature_key")
    rq_datetime, order_id = notify.text(fields["rq_datetime"]), notify.text(fields["order_id"])
    if not signatures_match(paymentreport_signature(key, rq_datetime, order_id), notify.text(fields["signature"])):
        raise notify.NotificationRefused(notify.BAD_SIGNATURE, "the signature does not match")
    paid_at = notify.jakarta(rq_datetime, "rq_datetime", required=True)
    amount = notify.positive(notify.decimal(fields["amount"], "amount"), "amount")
    tx_status = notify.text(fields.get("tx_status")) or "S"  # a payment report is a success unless it says so
    status = STATUS_MAP.get(tx_status.upper(), st.UNKNOWN)
    bank = notify.text(fields.get("credit_to_bank")) or notify.text(fields.get("debit_from_bank"))
    rq_uuid = notify.text(fields["rq_uuid"])[:128]
    return notify.RemoteNotification(
        external_id=order_id[:128], event_id=rq_uuid, event_key=f"espay:{order_id}:{rq_datetime}"[:255],
        event_at=paid_at, kind="payment" if status == st.PAID else "state", status=status,
        provider_status=tx_status[:64], amount=amount, paid_at=paid_at,
        currency=notify.text(fields.get("ccy")).upper()[:3], payment_channel=f"VA {bank}".strip() if bank else "VA",
        confirm=True, reply_fields={"rq_uuid": rq_uuid, "order_id": order_id})


def notification_reply(*, key: str, rq_uuid: str, order_id: str, code: str, message: str, now: datetime,
                       reconcile_id: str = "") -> dict[str, str]:
    """The merchant's reply to a payment report (current docs): signed with PAYMENTREPORT-RS when
    a key is given (only a verified report gets a signed reply)."""
    stamp = format_datetime(now)
    return {"rq_uuid": rq_uuid, "rs_datetime": stamp, "error_code": code, "error_message": message,
            "signature": paymentreport_reply_signature(key, rq_uuid, stamp, code) if key else "",
            "order_id": order_id, "reconcile_id": reconcile_id, "reconcile_datetime": stamp if reconcile_id else ""}


#: The reply's error_code and message per refusal.
NOTIFICATION_ERRORS = {"bad_signature": ("0101", "Invalid Signature"), "unknown_token": ("0102", "Unknown merchant"),
                       "unsupported": ("0102", "Unknown merchant"), "malformed": ("0001", "Invalid request"),
                       "oversize": ("0001", "Request too large"), "not_configured": ("0103", "Merchant not configured")}
