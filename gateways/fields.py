"""What a credential holds, declared once per provider (DESIGN.md "What a credential holds").

Each client class lists its `secret_fields` and `option_fields` as `Field`s: the admin form is
built from them (typed inputs, defaults, help) and the client reads its options through them
(`read_options`), so a name, a type and a default are written in one place. Which *combination*
of secrets is required stays the client's own rule (`GatewayClient.required_secrets` and
`validate`): it depends on more than one field (Munio: a token, or a login and a password).
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigurationError

TEXT, INT, NUMBER, CHOICE = "text", "int", "number", "choice"
KINDS = (TEXT, INT, NUMBER, CHOICE)


@dataclass(frozen=True)
class Field:
    """One key of a credential's `secrets` or `options`.

    `default` is what the client uses when the key is absent or blank; `required` means there is
    no default (the credential is incomplete without it). `minimum` bounds `int`/`number`;
    `choices` lists a `choice`'s values; `pattern` is a full-match regex for `text`.
    """

    name: str
    help: str
    kind: str = TEXT
    default: Any = None
    required: bool = False
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    pattern: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"field {self.name}: unknown kind {self.kind!r}")
        if (self.kind == CHOICE) != bool(self.choices):
            raise ValueError(f"field {self.name}: a choice field, and only one, has choices")

    @property
    def requirement(self) -> str:
        """What a valid value is, in words (for error messages)."""
        if self.kind == CHOICE:
            return "one of " + ", ".join(self.choices)
        if self.kind in (INT, NUMBER):
            what = "a whole number" if self.kind == INT else "a number"
            return what if self.minimum is None else f"{what} >= {self.minimum}"
        if self.pattern:
            return f"like {self.default!r}" if self.default else f"of the form {self.pattern}"
        return "text"

    def coerce(self, value: Any) -> Any:
        """The typed value of a stored (JSON) value; ValueError when it is not one."""
        if isinstance(value, bool):  # JSON true is not a number, nor a name
            raise ValueError(value)
        if self.kind == INT:
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
                value = int(value)
            if not isinstance(value, int):
                raise ValueError(value)
        elif self.kind == NUMBER:
            value = float(value)
        elif self.kind == CHOICE:
            text = str(value).strip().lower()
            value = next((c for c in self.choices if c.lower() == text), None)
            if value is None:
                raise ValueError(text)
        else:
            value = str(value).strip()
            if self.pattern and not re.fullmatch(self.pattern, value):
                raise ValueError(value)
        if self.minimum is not None and value < self.minimum:
            raise ValueError(value)
        return value

    def read(self, options: Mapping[str, Any], *, provider: str) -> Any:
        """This option's typed value in `options`, or its default; ConfigurationError (naming the
        option, never echoing a value) when it is malformed or required and missing."""
        value = options.get(self.name)
        if value is None or (isinstance(value, str) and not value.strip()):
            if self.required:
                raise ConfigurationError(f"{provider}: the credential needs option {self.name}", provider=provider)
            return self.default
        try:
            return self.coerce(value)
        except (TypeError, ValueError):
            raise ConfigurationError(f"{provider}: option {self.name} must be {self.requirement}",
                                     provider=provider) from None


def read_options(fields: Iterable[Field], options: Mapping[str, Any], *, provider: str) -> dict[str, Any]:
    """Every declared option's typed value (defaults filled in); keys nobody declared are ignored."""
    return {f.name: f.read(options, provider=provider) for f in fields}
