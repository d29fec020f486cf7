"""Policy errors: every problem of a file, each with the path of its field.

pydantic reports a problem at a ``loc`` tuple (``("use_cases", 2, "max_classification")``);
:func:`problems_of` is the one place that turns those into the paths operators read
(``use_cases[2].max_classification: unknown level 'SECRET'``). Checks that span several fields
raise :func:`problems` with locations relative to the model that found them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pydantic import ValidationError
from pydantic_core import PydanticCustomError

from docfactory.core.errors import ConfigError

#: A location below a model: field names and list indexes.
Loc = tuple[str | int, ...]

#: The custom pydantic error type that carries several ``(relative loc, message)`` problems.
_PROBLEMS = "policy_problems"


class PolicyError(ConfigError):
    """The policy file is invalid. ``problems`` lists every ``path: problem`` found."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        super().__init__(
            "; ".join(self.problems),
            reason="INVALID_POLICY",
            metadata={"file": source, "field": self.problems[0].split(":", 1)[0]},
        )


def problems(found: Sequence[tuple[Loc, str]]) -> PydanticCustomError:
    """An error for a validator to raise: ``found`` are ``(loc below the model, message)``."""
    return PydanticCustomError(
        _PROBLEMS, "{count} problem(s)", {"count": len(found), "found": found}
    )


def kind(value: object) -> str:
    """What a wrong value is, for messages: ``a list``, ``int 5``, ``nothing``."""
    if value is None:
        return "nothing"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"


def field_path(loc: Loc) -> str:
    """``("use_cases", 2, "retention")`` -> ``use_cases[2].retention``; () -> ``<root>``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "<root>"


# pydantic's wording for the structural errors, in the policy's words.
_MESSAGES = {
    "missing": "required",
    "extra_forbidden": "unknown field",
    "string_type": "must be a string, got {kind}",
    "bool_type": "must be true or false, got {kind}",
    "list_type": "must be a list, got {kind}",
    "tuple_type": "must be a list, got {kind}",
    "frozen_set_type": "must be a list, got {kind}",
    "set_type": "must be a list, got {kind}",
    "dict_type": "must be a mapping, got {kind}",
    "model_type": "must be a mapping, got {kind}",
    "model_attributes_type": "must be a mapping, got {kind}",
}


def problems_of(exc: ValidationError) -> list[str]:
    """Every problem of a pydantic ValidationError as ``path: message``."""
    out: list[str] = []
    for error in exc.errors():
        loc: Loc = tuple(error["loc"])
        if error["type"] == _PROBLEMS:
            found: Sequence[tuple[Loc, str]] = error.get("ctx", {})["found"]
            out.extend(f"{field_path(loc + rel)}: {msg}" for rel, msg in found)
            continue
        template = _MESSAGES.get(error["type"])
        if template is not None:
            message = template.format(kind=kind(error.get("input")))
        elif error["type"] == "value_error":
            message = str(error["msg"]).removeprefix("Value error, ")
        else:
            message = f"{error['msg']} (got {kind(error.get('input'))})"
        out.append(f"{field_path(loc)}: {message}")
    return out
