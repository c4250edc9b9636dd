"""Benchmark of the Espay batch upload (issue 6): a 10,000-row XLSX, validated and sent.

    bash scripts/with-services.sh .venv/bin/python bench/espay_batch.py [ROWS]   # PostgreSQL (as CI)
    .venv/bin/python bench/espay_batch.py [ROWS]                                 # throwaway SQLite

Measures, with DEBUG off:
1. validate and preview: `espay_batch_create` (read the XLSX, validate every cell, check doc_nos
   already sent, store the file and the lines) plus rendering the preview page — target ≤ 3 s;
2. send: confirm + `espay_batch_send` through the gateway sandbox (20 sendinvoice calls of 500,
   signatures checked by the sandbox, per-line results, 40,000 VA numbers, 10,000 invoices and
   events stored) — target ≤ 10 s;
and, for information, the results page and the XLSX export of the VA numbers.
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DEBUG", "0")
if not os.environ.get("DATABASE_URL"):
    # Never write into the developer's database: a throwaway SQLite file in a temp dir.
    os.environ.setdefault("ARBOOK_VAR_DIR", tempfile.mkdtemp(prefix="arbook-bench-espay-"))

import requests  # noqa: E402

from bench.seed import migrate, setup_django  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_xlsx(rows: int) -> bytes:
    import io

    from openpyxl import Workbook

    from arbook.services.espay_files import COLUMN_NAMES

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("invoices")
    sheet.append(list(COLUMN_NAMES))
    for i in range(1, rows + 1):
        amount = 100_000 + (i * 7919) % 900_000
        sheet.append([f"BENCH-{i:06d}", f"C{i % 3001:05d}", f"PT Pelanggan {i % 3001}", amount, amount, 1, amount,
                      None, f"Tagihan {i}", (i % 28) + 1])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("rows", nargs="?", type=int, default=10_000)
    args = parser.parse_args()

    setup_django()
    migrate()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import setup_test_environment

    from arbook.models import GatewayCredential, Invoice, Merchant
    from arbook.services.espay_batch import espay_batch_confirm, espay_batch_create, espay_batch_send
    from arbook.services.espay_files import parse_upload
    from gateways.sandbox import CREDENTIALS, OPTIONS

    setup_test_environment()  # the test client may use "testserver"
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    # The sandbox in a process of its own, as under `make run`: in-process, its threads would
    # compete with the sender for the GIL and the figure would measure both.
    port = free_port()
    sandbox = subprocess.Popen([sys.executable, "-m", "gateways.sandbox", "--port", str(port), "--providers", "espay"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            requests.get(base + "/_sandbox/stats", timeout=1)
            break
        except requests.ConnectionError:
            time.sleep(0.05)
    stamp = int(time.time())
    user = get_user_model().objects.create_user(f"bench-espay-{stamp}", password="x")
    merchant = Merchant.objects.create(name=f"Bench Espay {stamp}", slug=f"bench-espay-{stamp}")
    merchant.members.add(user)
    credential = GatewayCredential.objects.create(
        merchant=merchant, provider="espay", label="bench", base_url=base + "/espay",
        secrets={"signature_key": CREDENTIALS["espay"]["signature_key"]}, options=dict(OPTIONS["espay"]))
    client = Client()
    client.force_login(user)

    content = build_xlsx(args.rows)
    print(f"database: {connection.vendor}; file: {args.rows:,} rows, {len(content) / 1024:.0f} KiB XLSX")

    t = time.perf_counter()
    parsed = parse_upload(content=content, file_name="bench.xlsx")
    parse_s = time.perf_counter() - t
    assert not parsed.problems, parsed.problems[:3]

    t, cpu = time.perf_counter(), time.process_time()
    batch = espay_batch_create(credential=credential, user=user, file_name="bench.xlsx", content=content)
    create_s = time.perf_counter() - t
    t = time.perf_counter()
    preview = client.get(f"/espay/batches/{batch.pk}/")
    preview_s = time.perf_counter() - t
    assert batch.status == "ready" and preview.status_code == 200 and b"Ready to send" in preview.content
    validate_total = create_s + preview_s
    validate_cpu = time.process_time() - cpu

    t, cpu = time.perf_counter(), time.process_time()
    assert espay_batch_confirm(batch=batch, user=user).ok
    batch = espay_batch_send(batch=batch)
    send_s = time.perf_counter() - t
    send_cpu = time.process_time() - cpu
    calls = requests.get(base + "/_sandbox/stats", timeout=5).json().get("espay", 0)
    assert batch.status == "done" and batch.sent_count == args.rows, (batch.status, batch.sent_count)
    invoices = Invoice.objects.filter(merchant=merchant).count()

    t = time.perf_counter()
    results = client.get(f"/espay/batches/{batch.pk}/")
    results_s = time.perf_counter() - t
    assert results.status_code == 200
    t = time.perf_counter()
    export = client.get(f"/espay/batches/{batch.pk}/export.xlsx")
    size = sum(len(chunk) for chunk in export.streaming_content)
    export_s = time.perf_counter() - t
    sandbox.terminate()
    sandbox.wait(timeout=10)
    children = os.times()
    sandbox_cpu = children.children_user + children.children_system

    def verdict(value: float, target: float) -> str:
        return f"{'OK' if value <= target else 'OVER'} (target ≤ {target:.0f} s)"

    print(f"validate and preview: {validate_total:6.2f} s  {verdict(validate_total, 3)}  (CPU {validate_cpu:.2f} s)")
    print(f"    read + validate the XLSX (parse only)   {parse_s:6.2f} s")
    print(f"    espay_batch_create (parse, checks, store) {create_s:6.2f} s")
    print(f"    preview page                            {preview_s:6.2f} s")
    print(f"send through the sandbox: {send_s:6.2f} s  {verdict(send_s, 10)}  "
          f"({calls} calls of ≤ 500, signatures verified by the sandbox; {invoices:,} invoices, "
          f"{batch.sent_count:,} lines sent; this process's CPU {send_cpu:.2f} s)")
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    print(f"    sandbox process CPU (whole run) {sandbox_cpu:.2f} s; machine load average {load} "
          f"on {os.cpu_count()} CPUs (wall times stretch when the machine is shared)")
    print(f"results page (first 200 lines): {results_s:6.2f} s; VA export XLSX: {export_s:6.2f} s, {size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
