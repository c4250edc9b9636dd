"""Benchmark of the payment notification receiver (issue 7): how fast a delivery is answered,
and how fast stored notifications are applied.

    bash scripts/with-services.sh .venv/bin/python bench/notifications.py [N]   # PostgreSQL + Redis (as CI)
    .venv/bin/python bench/notifications.py [N]                                 # throwaway SQLite

1. receive: N Xendit invoice callbacks POSTed to /hooks/xendit/<token>/ through Django's full
   request stack (middleware, view, store raw + verify, enqueue the apply on commit to the real
   broker) — per-request latency p50 / p95 / max; the providers' timeouts are 30 s (Xendit) and up;
2. apply: the N stored notifications applied by the service (what the Celery task runs), each
   changing its invoice from open to paid with an InvoiceEvent — notifications per second;
3. the same N delivered again (duplicates): applied as no-ops.
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DEBUG", "0")
if not os.environ.get("DATABASE_URL"):
    os.environ.setdefault("ARBOOK_VAR_DIR", tempfile.mkdtemp(prefix="arbook-bench-notifications-"))

from bench.seed import migrate, setup_django  # noqa: E402


def main(n: int) -> None:
    setup_django()
    migrate()
    from django.test import Client
    from django.utils import timezone

    from arbook.models import GatewayCredential, Invoice, InvoiceEvent, Merchant, Notification
    from arbook.services.invoice_write import notification_apply
    from gateways.sandbox import CREDENTIALS, OPTIONS, Sandbox

    sandbox = Sandbox(size=n, providers=("xendit",)).providers["xendit"]
    merchant, _ = Merchant.objects.get_or_create(slug="bench-notifications", defaults={"name": "Bench notifications"})
    credential = GatewayCredential.objects.create(merchant=merchant, provider="xendit", label=f"bench {time.time()}",
                                                  secrets=dict(CREDENTIALS["xendit"]), options=dict(OPTIONS["xendit"]))
    now = timezone.now()
    truths = list(sandbox.truth())
    Invoice.objects.bulk_create([
        Invoice(merchant=merchant, credential=credential, provider="xendit", external_id=t["external_id"],
                number=t["number"], currency=t["currency"], amount=t["amount"], outstanding=t["amount"],
                paid_amount=Decimal(0), status="open", provider_status="PENDING",
                provider_updated_at=t["issued_at"], first_seen_at=now, last_synced_at=now)
        for t in truths], batch_size=500)
    messages = [sandbox.callback(t["external_id"], event="PAID") for t in truths]
    client = Client()
    path = f"/hooks/xendit/{credential.hook_token}/"

    def deliver() -> list[float]:
        took = []
        for headers, body in messages:
            extra = {k: v for k, v in headers.items() if k != "Content-Type"}
            start = time.perf_counter()
            response = client.post(path, data=body, content_type="application/json", headers=extra)
            took.append(time.perf_counter() - start)
            assert response.status_code == 200, response.content
        return took

    def report(label: str, took: list[float]) -> None:
        ms = sorted(t * 1000 for t in took)
        print(f"{label}: {len(ms)} requests, p50 {statistics.median(ms):.1f} ms, "
              f"p95 {ms[int(len(ms) * 0.95) - 1]:.1f} ms, max {ms[-1]:.1f} ms")

    backend = "PostgreSQL" if os.environ.get("DATABASE_URL", "").startswith("postgres") else "SQLite"
    broker = "Redis" if os.environ.get("REDIS_URL") else "filesystem broker"
    print(f"backend: {backend}, {broker}, DEBUG off, N={n}")
    report("receive (store raw + verify + enqueue)", deliver())

    stored = list(Notification.objects.filter(credential=credential).order_by("pk"))
    start = time.perf_counter()
    outcomes = [notification_apply(notification=x).outcome for x in stored]
    elapsed = time.perf_counter() - start
    assert outcomes.count("applied") == n, {o: outcomes.count(o) for o in set(outcomes)}
    print(f"apply: {n} notifications in {elapsed:.2f} s = {n / elapsed:.0f}/s (each open -> paid with an event)")

    report("receive duplicates", deliver())
    again = list(Notification.objects.filter(credential=credential).order_by("pk"))[n:]
    start = time.perf_counter()
    outcomes = [notification_apply(notification=x).outcome for x in again]
    elapsed = time.perf_counter() - start
    assert outcomes.count("duplicate") == n
    print(f"apply duplicates: {n} in {elapsed:.2f} s = {n / elapsed:.0f}/s (no change)")
    assert Invoice.objects.filter(credential=credential, status="paid").count() == n
    assert InvoiceEvent.objects.filter(invoice__credential=credential, source="notification").count() == n


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
