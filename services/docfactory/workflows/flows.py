"""Flow definitions: one YAML file per flow, versioned, validated with pydantic.

A flow declares the documents of a dossier (types with classification cues and a JSON Schema of
their fields), the rules checked on the extracted fields, the retrieval questions of the analysis
note, the note's outline and the sign-off::

    name: financement
    version: 3
    title: Instruction d'une demande de financement
    documents:
      - name: demande
        label: Lettre de demande de financement
        cues: [demande de financement, sollicitons]
        schema:
          type: object
          properties:
            siren: {type: string, title: SIREN, x-kind: siren}
            montant: {type: string, title: Montant demandé, x-kind: amount_eur}
          required: [siren, montant]
    rules:
      - {id: siren-coherent, kind: same_value, fields: [demande.siren, kbis.siren]}
    retrieval:
      collections: [regles-credit]
      questions: [Quel est le plafond d'un prêt d'équipement ?]
    note: {title: Note d'analyse, outline: [Synthèse, Pièces, Contrôles, Règles, Avis]}
    signoff: {role: reviewer, four_eyes_above: 100000, amount_field: demande.montant}

Field names in rules are ``<document type>.<field>``. Every error names the path of the
offending field (``documents[0].schema.properties.siren.x-kind: ...``).

The JSON Schema of a document type is ``DocTypeSpec.field_schema`` (``schema`` in YAML; the
Python attribute cannot be named ``schema``, which pydantic's BaseModel reserves). Each property
may carry ``x-kind`` (one of :data:`FIELD_KINDS`), used by the typed extractors.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from docfactory.core.errors import ConfigError

log = logging.getLogger(__name__)

FIELD_KINDS = ("siren", "siret", "iban", "nir", "amount_eur", "date", "email", "phone", "text")
SIGNOFF_ROLES = ("reviewer", "admin", "auditor")
_NAME = r"^[a-z][a-z0-9_-]{0,63}$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class DocTypeSpec(_Model):
    """A type of document in a flow: how to recognise it (cues) and what to extract."""

    name: str = Field(pattern=_NAME)
    label: str
    cues: list[str] = Field(default_factory=list)
    field_schema: dict[str, Any] = Field(alias="schema")
    required: bool = True

    @field_validator("field_schema")
    @classmethod
    def _check_schema(cls, schema: dict[str, Any]) -> dict[str, Any]:
        if schema.get("type") != "object":
            raise ValueError("must be a JSON Schema with type: object")
        props = schema.get("properties")
        if not isinstance(props, dict) or not props:
            raise ValueError("properties: must list at least one field")
        for name, prop in props.items():
            if not isinstance(prop, dict):
                raise ValueError(f"properties.{name}: must be a mapping")
            kind = prop.get("x-kind", "text")
            if kind not in FIELD_KINDS:
                raise ValueError(
                    f"properties.{name}.x-kind: unknown kind {kind!r} "
                    f"(expected one of {', '.join(FIELD_KINDS)})"
                )
        for name in schema.get("required", []) or []:
            if name not in props:
                raise ValueError(f"required: {name!r} is not a property")
        try:
            import jsonschema

            jsonschema.Draft202012Validator.check_schema(schema)
        except ImportError:  # pragma: no cover - jsonschema ships with the extras
            pass
        except Exception as exc:  # jsonschema.SchemaError
            raise ValueError(f"invalid JSON Schema: {getattr(exc, 'message', exc)}") from exc
        return schema

    @property
    def field_names(self) -> list[str]:
        return list(self.field_schema["properties"])

    def kind_of(self, field: str) -> str:
        return str(self.field_schema["properties"].get(field, {}).get("x-kind", "text"))

    def title_of(self, field: str) -> str:
        return str(self.field_schema["properties"].get(field, {}).get("title", field))


class _Rule(_Model):
    id: str = Field(pattern=_NAME)
    label: str = ""
    severity: Literal["blocking", "warning"] = "blocking"

    def field_refs(self) -> list[str]:
        return []


class SameValueRule(_Rule):
    """Every listed field (``type.field``) has the same value (normalised by its kind)."""

    kind: Literal["same_value"]
    fields: list[str] = Field(min_length=2)

    def field_refs(self) -> list[str]:
        return list(self.fields)


class SumEqualsRule(_Rule):
    """The amounts of ``terms`` add up to ``total`` (within ``tolerance`` euros)."""

    kind: Literal["sum_equals"]
    terms: list[str] = Field(min_length=1)
    total: str
    tolerance: float = Field(default=0.01, ge=0)

    def field_refs(self) -> list[str]:
        return [*self.terms, self.total]


class MaxAmountRule(_Rule):
    """An amount at most ``ceiling`` euros."""

    kind: Literal["max_amount"]
    field: str
    ceiling: float = Field(gt=0)

    def field_refs(self) -> list[str]:
        return [self.field]


class NotExpiredRule(_Rule):
    """A date not older than ``max_age_days`` (an issue date), or not past (``not_past``:
    an expiry date) at the time of the check."""

    kind: Literal["not_expired"]
    field: str
    max_age_days: int | None = Field(default=None, gt=0)
    not_past: bool = False

    @model_validator(mode="after")
    def _one(self) -> NotExpiredRule:
        if (self.max_age_days is None) == (not self.not_past):
            raise ValueError("set exactly one of max_age_days or not_past: true")
        return self

    def field_refs(self) -> list[str]:
        return [self.field]


class RequiredFieldsRule(_Rule):
    """The listed fields were found (with evidence)."""

    kind: Literal["required_fields"]
    fields: list[str] = Field(min_length=1)

    def field_refs(self) -> list[str]:
        return list(self.fields)


Rule = Annotated[
    SameValueRule | SumEqualsRule | MaxAmountRule | NotExpiredRule | RequiredFieldsRule,
    Field(discriminator="kind"),
]


class RetrievalSpec(_Model):
    collections: list[str] = Field(default_factory=list)
    questions: list[str] = Field(default_factory=list)
    top_k: int = Field(default=3, ge=1, le=20)


class NoteSpec(_Model):
    title: str
    outline: list[str] = Field(min_length=1)


class SignoffSpec(_Model):
    role: str = "reviewer"
    four_eyes_above: float | None = Field(default=None, ge=0)
    amount_field: str | None = None
    deadline_hours: float = Field(default=72.0, gt=0)
    escalation_role: str = "admin"

    @field_validator("role", "escalation_role")
    @classmethod
    def _role(cls, role: str) -> str:
        if role not in SIGNOFF_ROLES:
            raise ValueError(f"unknown role {role!r} (expected one of {', '.join(SIGNOFF_ROLES)})")
        return role

    @model_validator(mode="after")
    def _amount(self) -> SignoffSpec:
        if self.four_eyes_above is not None and not self.amount_field:
            raise ValueError("four_eyes_above needs amount_field (the amount it applies to)")
        return self


class FlowSpec(_Model):
    name: str = Field(pattern=_NAME)
    version: int = Field(ge=1)
    title: str
    language: Literal["fr", "en"] = "fr"
    description: str = ""
    documents: list[DocTypeSpec] = Field(min_length=1)
    rules: list[Rule] = Field(default_factory=list)
    retrieval: RetrievalSpec = Field(default_factory=RetrievalSpec)
    note: NoteSpec
    signoff: SignoffSpec = Field(default_factory=SignoffSpec)

    @model_validator(mode="after")
    def _references(self) -> FlowSpec:
        types = {d.name: d for d in self.documents}
        if len(types) != len(self.documents):
            raise ValueError("documents: two document types share a name")
        ids = [r.id for r in self.rules]
        if len(set(ids)) != len(ids):
            raise ValueError("rules: two rules share an id")
        refs = [(f"rules[{i}]", ref) for i, r in enumerate(self.rules) for ref in r.field_refs()]
        if self.signoff.amount_field:
            refs.append(("signoff.amount_field", self.signoff.amount_field))
        for path, ref in refs:
            doc, _, fld = ref.partition(".")
            if doc not in types:
                raise ValueError(f"{path}: {ref!r} names no document type of this flow")
            if fld not in types[doc].field_names:
                raise ValueError(f"{path}: {ref!r}: document type {doc!r} has no field {fld!r}")
        return self

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def doc_type(self, name: str) -> DocTypeSpec | None:
        return next((d for d in self.documents if d.name == name), None)


class FlowError(ConfigError):
    """A flow file is invalid; ``problems`` lists every ``path: problem``."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        super().__init__(
            f"{source}: " + "; ".join(self.problems),
            reason="INVALID_FLOW",
            metadata={"file": source, "field": self.problems[0].split(":", 1)[0]},
        )


def _path(loc: Sequence[int | str], data: Any) -> str:
    """pydantic ``loc`` -> ``documents[0].schema.properties``; discriminated-union tags
    (``same_value``) are dropped."""
    out = ""
    node = data
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            continue
        if isinstance(node, Mapping) and part not in node and node.get("kind") == part:
            continue  # the union tag
        out += f".{part}" if out else str(part)
        node = node.get(part) if isinstance(node, Mapping) else None
    return out


def _problems(exc: ValidationError, data: Any) -> list[str]:
    out = []
    for e in exc.errors():
        path = _path(e["loc"], data) or "(file)"
        msg = str(e["msg"]).removeprefix("Value error, ")
        if msg.startswith(("rules[", "signoff.", "documents:", "rules:")):
            out.append(msg if e["loc"] == () else f"{path}: {msg}")
        else:
            out.append(f"{path}: {msg}")
    return out


def parse_flow(text: str, source: str = "<flow>") -> FlowSpec:
    """Parse and validate one flow; raise :class:`FlowError` naming every bad field."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise FlowError(source, [f"(file): not valid YAML: {exc}"]) from exc
    if not isinstance(data, Mapping):
        raise FlowError(source, ["(file): must be a mapping"])
    try:
        return FlowSpec.model_validate(data)
    except ValidationError as exc:
        raise FlowError(source, _problems(exc, data)) from exc


def load_flow(path: Path) -> FlowSpec:
    return parse_flow(path.read_text(encoding="utf-8"), str(path))


def shipped_flows_dir() -> Path:
    return Path(__file__).with_name("flows")


@dataclass(frozen=True)
class _Loaded:
    mtime_ns: int
    size: int
    flow: FlowSpec | None  # the last good version of this file


class FlowRegistry:
    """The flows of a folder, reloaded when a file changes (like the policy): a file that no
    longer validates keeps its last good version and its error is reported in ``errors``.
    Every version seen stays addressable as ``name@version``."""

    def __init__(self, folder: Path, *, check_interval: float = 0.0) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        self._files: dict[Path, _Loaded] = {}
        self._versions: dict[tuple[str, int], FlowSpec] = {}
        self.errors: dict[str, str] = {}
        self.reload()

    def reload(self) -> dict[str, str]:
        """Rescan the folder; return the errors of the files that failed (path -> message)."""
        with self._lock:
            paths = sorted(self.folder.glob("*.yaml")) + sorted(self.folder.glob("*.yml"))
            for path in paths:
                try:
                    st = path.stat()
                except OSError:
                    continue
                old = self._files.get(path)
                if old is not None and (old.mtime_ns, old.size) == (st.st_mtime_ns, st.st_size):
                    continue
                try:
                    flow = load_flow(path)
                except FlowError as exc:
                    self.errors[str(path)] = str(exc)
                    log.error("flow file %s rejected, keeping the last good version: %s", path, exc)
                    self._files[path] = _Loaded(
                        st.st_mtime_ns, st.st_size, old.flow if old else None
                    )
                    continue
                except OSError as exc:
                    self.errors[str(path)] = f"{path}: {exc}"
                    continue
                self.errors.pop(str(path), None)
                known = self._versions.get((flow.name, flow.version))
                if known is not None and known != flow:
                    msg = (
                        f"{path}: version: {flow.name}@{flow.version} changed without a new "
                        "version number; keeping the version already loaded"
                    )
                    self.errors[str(path)] = msg
                    log.error("%s", msg)
                    self._files[path] = _Loaded(st.st_mtime_ns, st.st_size, known)
                    continue
                self._versions[(flow.name, flow.version)] = flow
                self._files[path] = _Loaded(st.st_mtime_ns, st.st_size, flow)
            return dict(self.errors)

    def latest(self) -> dict[str, FlowSpec]:
        with self._lock:
            out: dict[str, FlowSpec] = {}
            for loaded in self._files.values():
                if loaded.flow is not None:
                    out[loaded.flow.name] = loaded.flow
            return out

    def get(self, ref: str) -> FlowSpec | None:
        """``name`` (the current version of its file) or ``name@version``."""
        self.reload()
        name, _, version = ref.partition("@")
        if version:
            try:
                number = int(version.removeprefix("v"))
            except ValueError:
                return None
            with self._lock:
                return self._versions.get((name, number))
        return self.latest().get(name)
