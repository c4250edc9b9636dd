"""The sandbox's debtors: one deterministic pool of people that Xendit's and Munio's populations
draw from, so the same person owes on several gateways, as in a real multi-gateway business.

Person `k` is the same name, e-mail and phone whichever provider bills them. Each provider shows
them its own way: Xendit keeps the address as typed (mixed case) and a local mobile number
("0812…") in the customer object; Munio lower-cases the address and writes the number with the
country code ("62812…" or "+62812…"). Xendit draws from people [0, P) and Munio from [P/2, 3P/2),
so half of each provider's customers also owe on the other (P = `pool_size(size)`).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

GIVEN = ("Budi", "Siti", "Agus", "Dewi", "Rizky", "Putri", "Andi", "Maria", "Juan", "Emily", "Hendra", "Ayu")
SURNAMES = ("Santoso", "Wijaya", "Hartono", "Kusuma", "Reyes", "Garcia", "Smith", "Nugroho", "Lestari", "Pratama")
DOMAINS = ("gmail.com", "yahoo.co.id", "outlook.com", "example.id")
#: Xendit draws from [0, P), Munio from [P/2, 3P/2): the overlap is shared customers.
OFFSETS = {"xendit": 0.0, "munio": 0.5}


def pool_size(size: int) -> int:
    """About ten invoices per person, as in a real ledger (at least 8 people)."""
    return max(8, size // 10)


@dataclass(frozen=True)
class Person:
    key: int
    given: str
    surname: str
    email: str  # as the person typed it (mixed case)
    mobile: str  # national significant number, e.g. "81234567890"

    @property
    def name(self) -> str:
        return f"{self.given} {self.surname}"

    def mobile_local(self) -> str:
        return "0" + self.mobile

    def mobile_international(self, plus: bool) -> str:
        return ("+62" if plus else "62") + self.mobile


def person(key: int, seed: int) -> Person:
    digest = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=16).digest()
    given, surname = GIVEN[digest[0] % len(GIVEN)], SURNAMES[digest[1] % len(SURNAMES)]
    domain = DOMAINS[digest[2] % len(DOMAINS)]
    email = f"{given}.{surname}{key}@{domain.capitalize() if digest[3] % 3 == 0 else domain}"
    mobile = "8" + str(11 + digest[4] % 89) + str(int.from_bytes(digest[5:10], "big") % 10**7).zfill(7)
    return Person(key=key, given=given, surname=surname, email=email, mobile=mobile)


def person_for(provider: str, u: float, size: int, seed: int) -> Person:
    """The person a provider's invoice bills, from a uniform draw `u` in [0, 1)."""
    pool = pool_size(size)
    return person(int(OFFSETS[provider] * pool) + int(u * pool), seed)
