"""Locust users for `bench/load.py`: staff reading arbook while syncs and an upload run.

Plain HTTP against gunicorn (no Django here). `ARBOOK_LOAD_DATA` names a JSON file written by
the runner: the users' names and password, and sample invoice and customer ids, merchants,
currencies and search words to vary the requests. Each request is named by page, so the stats
come out per page.
"""
from __future__ import annotations

import json
import os
import random
import re
from datetime import date, timedelta

from locust import HttpUser, between, task

DATA = json.loads(open(os.environ["ARBOOK_LOAD_DATA"]).read())
CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
STATUSES = ["open", "paid", "partially_paid", "expired", "failed", "cancelled"]
SORTS = ["due_at", "-due_at", "-outstanding", "issued_at", "customer_name", "-number"]


class Staff(HttpUser):
    """A collector or accountant: mostly lists and aging, some detail pages, now and then an export."""

    wait_time = between(1, 3)

    def on_start(self) -> None:
        username = random.choice(DATA["users"])
        page = self.client.get("/accounts/login/", name="sign-in page")
        token = CSRF.search(page.text).group(1)
        response = self.client.post("/accounts/login/", name="sign in (POST: password hashing)",
                                    data={"username": username, "password": DATA["password"],
                                          "csrfmiddlewaretoken": token},
                                    headers={"Referer": self.host + "/accounts/login/"}, allow_redirects=False)
        if response.status_code != 302:
            raise RuntimeError(f"sign-in failed for {username}: HTTP {response.status_code}")

    def _day(self, back_days: int = 700) -> str:
        return (date.fromisoformat(DATA["today"]) - timedelta(days=random.randint(0, back_days))).isoformat()

    @task(6)
    def invoice_list_filtered(self) -> None:
        params = random.choice([
            {"status": random.choice(STATUSES)},
            {"merchant": random.choice(DATA["merchants"])},
            {"currency": random.choice(DATA["currencies"])},
            {"overdue": "1", "sort": random.choice(SORTS)},
            {"due_from": self._day(), "due_to": self._day(0)},
            {"status": "open", "sort": random.choice(SORTS), "size": 100},
        ])
        self.client.get("/invoices/", params=params, name="invoice list (filters)")

    @task(3)
    def invoice_list_search(self) -> None:
        self.client.get("/invoices/", params={"q": random.choice(DATA["words"])}, name="invoice list (search)")

    @task(1)
    def invoice_totals(self) -> None:
        self.client.get("/invoices/", params={"status": random.choice(STATUSES), "_totals": "1"},
                        name="invoice list (totals)")

    @task(4)
    def aging(self) -> None:
        params = random.choice([{}, {"as_of": self._day(120)}, {"basis": "issued"},
                                {"group": "customer"}, {"as_of": self._day(90), "group": "customer"}])
        self.client.get("/aging/", params=params, name="aging" if "as_of" not in params else "aging (as of)")

    @task(3)
    def overview(self) -> None:
        self.client.get("/", name="overview")

    @task(3)
    def invoice_detail(self) -> None:
        self.client.get(f"/invoices/{random.choice(DATA['invoices'])}/", name="invoice page")

    @task(2)
    def customer_list(self) -> None:
        params = random.choice([{}, {"q": random.choice(DATA["words"])}, {"overdue": "1"},
                                {"sort": "-outstanding"}])
        self.client.get("/customers/", params=params, name="customer list")

    @task(3)
    def customer_detail(self) -> None:
        self.client.get(f"/customers/{random.choice(DATA['customers'])}/", name="customer page")

    @task(1)
    def export(self) -> None:
        customer = random.choice(DATA["customer_names"])
        with self.client.get("/invoices/", params={"customer": customer, "_export": "csv"}, name="export (CSV)",
                             stream=True, catch_response=True) as response:
            size = sum(len(chunk) for chunk in response.iter_content(65536))
            if response.status_code == 200 and size > 0:
                response.success()
            else:
                response.failure(f"HTTP {response.status_code}, {size} bytes")
