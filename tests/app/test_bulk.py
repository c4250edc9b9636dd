"""`arbook.bulk.array`: the joined-string arrays the sync's writer sends must mean exactly the list."""
from __future__ import annotations

import pytest
from django.db import connection

from arbook import bulk
from arbook.models import Invoice
from tests.factories import CredentialFactory, InvoiceFactory

pytestmark = [pytest.mark.django_db,
              pytest.mark.skipif("connection.vendor != 'postgresql'", reason="the joined arrays are PostgreSQL's")]


def _round_trip(values, of="varchar"):
    sql, param = bulk.array(values, of=of)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT x FROM unnest({sql}) WITH ORDINALITY AS a(x, n) ORDER BY n", [param])
        return [row[0] for row in cursor.fetchall()]


@pytest.mark.parametrize("values", [
    [], ["one"], [""], ["", ""], ["a", "", "b"], ["a,b", "c d", "ünïcödé", "'quote'", '"double"', "{brace}", "NULL"],
    ["has\x1funit separator", "plain"], [None, "x"], [str(n) for n in range(2500)],
])
def test_text_arrays_round_trip_element_for_element(values):
    assert _round_trip(values) == values


@pytest.mark.parametrize("values", [[], [7], [1, None, 3], [None], [2**62, -5, 0]])
def test_bigint_arrays_round_trip_with_nulls(values):
    assert _round_trip(values, of="bigint") == values


def test_joined_form_is_used_only_where_it_is_exact():
    assert bulk.array(["a", "b"])[0].startswith("string_to_array(")
    assert bulk.array(["a", "b\x1f"]) == ("%s::varchar[]", ["a", "b\x1f"])
    assert bulk.array(["a", None]) == ("%s::varchar[]", ["a", None])
    assert bulk.array([1, None], of="bigint") == ("string_to_array(%s, ',', 'N')::bigint[]", "1,N")


def test_select_in_finds_the_rows_of_text_keys():
    credential = CredentialFactory()
    wanted = [InvoiceFactory(credential=credential, external_id=f"INV,{n}").external_id for n in range(3)]
    InvoiceFactory(credential=credential, external_id="OTHER")
    rows = bulk.select_in(Invoice, ("external_id",), where={"credential_id": credential.id}, key="external_id",
                          values=[*wanted, "MISSING"])
    assert sorted(r[0] for r in rows) == sorted(wanted)
