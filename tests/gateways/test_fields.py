"""The credential declarations (`gateways.fields`): every secret and option a client reads is
declared by that client, and a declared option reads typed, with its default, or refuses."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateways import PROVIDERS, ConfigurationError, client_class
from gateways.fields import CHOICE, INT, NUMBER, Field, read_options

GATEWAYS = Path(__file__).resolve().parents[2] / "gateways"
#: Espay also finds its comm_code among the secrets (the sandbox's credentials carry it there).
FALLBACKS = {("espay", "comm_code")}


def names_read(source: str, kind: str) -> set[str]:
    if kind == "options":
        patterns = [r'options\b[^\n]{0,12}\.get\("(\w+)"', r'options\["(\w+)"\]', r'settings\["(\w+)"\]']
    else:
        patterns = [r'secrets\b[^\n]{0,12}\.get\("(\w+)"', r"secrets\[[\"'](\w+)[\"']\]",
                    r'secret\(secrets, "(\w+)"\)', r'require\(self\.secrets, "(\w+)"']
    return {name for pattern in patterns for name in re.findall(pattern, source)}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_every_secret_and_option_a_client_reads_is_declared(provider):
    client = client_class(provider)
    source = (GATEWAYS / f"{provider}.py").read_text()
    secrets = {f.name for f in client.secret_fields}
    options = {f.name for f in client.option_fields}
    assert len(secrets) == len(client.secret_fields) and len(options) == len(client.option_fields)
    assert names_read(source, "secrets") - secrets <= {n for p, n in FALLBACKS if p == provider}
    assert names_read(source, "options") <= options
    assert {n for names in client.required_secrets for n in names} <= secrets
    assert "self.options.get(" not in source  # options are read through the declarations


def test_the_shared_window_options_are_read_through_the_declarations():
    source = (GATEWAYS / "base.py").read_text()
    assert "options.get(" not in source
    for provider in ("faspay", "xendit", "farpay"):
        assert {"window_months_back", "window_months_ahead", "owed_years_back"} <= {
            f.name for f in client_class(provider).option_fields}


@pytest.mark.parametrize("field, stored, expected", [
    (Field("n", "", kind=INT, default=3, minimum=1), None, 3),
    (Field("n", "", kind=INT, default=3, minimum=1), "  ", 3),
    (Field("n", "", kind=INT, default=3, minimum=1), " 12 ", 12),
    (Field("n", "", kind=INT, default=3, minimum=1), 12.0, 12),
    (Field("x", "", kind=NUMBER, default=10, minimum=0), "2.5", 2.5),
    (Field("c", "", kind=CHOICE, default="a", choices=("a", "Bee")), " bee", "Bee"),
    (Field("t", "", default="v2", pattern=r"v\d+"), " v3 ", "v3"),
])
def test_a_declared_option_reads_typed(field, stored, expected):
    assert read_options([field], {field.name: stored}, provider="p")[field.name] == expected


@pytest.mark.parametrize("field, stored, words", [
    (Field("n", "", kind=INT, minimum=1), "0", "a whole number >= 1"),
    (Field("n", "", kind=INT), "12.5", "a whole number"),
    (Field("n", "", kind=INT), True, "a whole number"),
    (Field("x", "", kind=NUMBER), "lots", "a number"),
    (Field("c", "", kind=CHOICE, choices=("a", "b")), "z", "one of a, b"),
    (Field("t", "", default="v2", pattern=r"v\d+"), "v2/../admin", "like 'v2'"),
])
def test_a_malformed_option_is_a_configuration_error_that_names_it(field, stored, words):
    with pytest.raises(ConfigurationError, match=f"p: option {field.name} must be {re.escape(words)}") as error:
        read_options([field], {field.name: stored}, provider="p")
    assert str(stored) not in str(error.value) or str(stored) in words


def test_a_required_option_without_a_value_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="needs option comm_code"):
        read_options([Field("comm_code", "", required=True)], {"comm_code": " "}, provider="espay")


def test_a_declaration_is_checked_when_written():
    with pytest.raises(ValueError):
        Field("c", "", kind=CHOICE)
    with pytest.raises(ValueError):
        Field("c", "", kind="date")
