"""Typed component records: what the compiler tells ``verify`` about each component.

A compiled model's ``meta["components"]`` is a list of :class:`ComponentRecord` JSON
objects, one per component the compiler placed: its kind, where it sits (layer,
sublayer, head index), the rules it serves and the residual directions it reads and
writes. Every reader goes through :func:`component_records`, never through the raw
dicts, so a kind is a :class:`ComponentKind` member and a head index is checked.

Model files written before the records had kinds named by compiler class
(``"InductionHead"``), no ``reads``/``writes`` and no ``head`` for MLP components;
:meth:`ComponentRecord.from_json` still reads them (see ``LEGACY_KINDS``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from craft.models.layout import Direction
from specs.errors import CraftError

Sublayer = Literal["attn", "mlp"]


class ComponentKind(StrEnum):
    """The closed set of component kinds; each lives in one kind of sublayer.

    Attention kinds (one head each):

    * ``previous-token``: attends from ``t`` to ``t-1`` and copies ``x[t-1]`` into
      the ``prev`` subspace.
    * ``skip-detector``: attends from a cue to the anchors within its rules' window and
      writes ``fire:<rule>`` for the skip-bigram rules it detects.
    * ``induction``: attends from ``x[t]`` to the position after its earliest earlier
      occurrence (K-composition with ``prev``) and copies that token.
    * ``copy``: attends from a cue at ``t`` to ``t - offset`` (BOS elsewhere) and copies
      that token (a copy rule).
    * ``trigram-head`` (compact compiler): attends to its own position when
      ``(x[t-1], x[t])`` is a trigram pair, and to BOS otherwise.
    * ``readout-head`` (compact compiler): attends to its own position when a
      non-deterministic rule fires and writes that rule's distribution.
    * ``bracket-count``: attends uniformly and writes (openers - closers) / (t + 1).
    * ``bracket-min``: attends to the prefix position where openers - closers is least.
    * ``bracket``: attends from a cue to the innermost open bracket and writes its
      closer (a bracket rule).
    * ``position-share`` (position-free models): attends uniformly over the prefix and
      writes BOS's share ``1/(t+1)`` (:mod:`craft.compiler.positions`).

    MLP kinds (a group of units each):

    * ``trigram-and``: ``fire:<rule> = [x[t-1] in A] AND [x[t] in B]`` from ``prev``
      and ``tok``.
    * ``readout``: gives a non-deterministic rule its exact distribution, cancelling
      the direct path and lower rules' boosts where it fires.
    * ``product``: tensor family, bilinear units each the exact product of two linear
      features (the levels of a readout's product tree: an OR of a count, a gate).
    * ``bracket-depth``: turns the bracket count's average into the count.
    * ``bracket-code``: one-hot bracket depths at cues and at openers.
    * ``position-code``: turns ``1/(t+1)`` into the position code a learned table
      would have added (a piecewise-linear interpolant through every position).
    """

    PREVIOUS_TOKEN = "previous-token"
    SKIP_DETECTOR = "skip-detector"
    TRIGRAM_AND = "trigram-and"
    INDUCTION = "induction"
    COPY = "copy"
    READOUT = "readout"
    TRIGRAM_HEAD = "trigram-head"
    READOUT_HEAD = "readout-head"
    POSITION_SHARE = "position-share"
    POSITION_CODE = "position-code"
    BRACKET_COUNT = "bracket-count"
    BRACKET_DEPTH = "bracket-depth"
    BRACKET_MIN = "bracket-min"
    BRACKET_CODE = "bracket-code"
    BRACKET = "bracket"
    PRODUCT = "product"

    @property
    def sublayer(self) -> Sublayer:
        """``"mlp"`` for the MLP kinds, ``"attn"`` for the rest."""
        mlp = (
            ComponentKind.TRIGRAM_AND,
            ComponentKind.READOUT,
            ComponentKind.POSITION_CODE,
            ComponentKind.BRACKET_DEPTH,
            ComponentKind.BRACKET_CODE,
            ComponentKind.PRODUCT,
        )
        return "mlp" if self in mlp else "attn"


# kinds as the compiler wrote them before records (its class names)
LEGACY_KINDS = {
    "PrevToken": ComponentKind.PREVIOUS_TOKEN,
    "Detector": ComponentKind.SKIP_DETECTOR,
    "TrigramAnd": ComponentKind.TRIGRAM_AND,
    "InductionHead": ComponentKind.INDUCTION,
    "Readout": ComponentKind.READOUT,
}
_KEYS = ("name", "kind", "layer", "sublayer", "head", "rules", "reads", "writes")
_KINDS = ", ".join(k.value for k in ComponentKind)


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _kind(value: object) -> ComponentKind | None:
    """``value`` as a kind (a member or its string value), or None."""
    try:
        return ComponentKind(value)
    except (ValueError, TypeError):
        return None


@dataclass(frozen=True)
class ComponentRecord:
    """One compiled component: kind, place, rules, and the directions it reads and writes.

    Attributes:
        name: the component's name, unique in its model (``"induction:noun-induction"``).
        kind: what the component computes.
        layer: its layer (>= 0).
        sublayer: ``"attn"`` or ``"mlp"``; must be the kind's sublayer.
        head: the head index in its layer for attention components; None for MLPs.
        rules: the spec rules it serves.
        reads: residual directions it reads (value None: a whole subspace, ``prev``).
        writes: residual directions it writes.

    Raises:
        CraftError: an unknown kind, a negative layer, or a head index that does not fit
            the sublayer (attention needs one >= 0, an MLP has none).
    """

    name: str
    kind: ComponentKind
    layer: int
    sublayer: Sublayer
    head: int | None
    rules: tuple[str, ...] = ()
    reads: tuple[Direction, ...] = ()
    writes: tuple[Direction, ...] = ()

    def __post_init__(self) -> None:
        where = f"component {self.name!r}"
        kind = _kind(self.kind)
        if kind is None:
            raise CraftError(f"unknown kind {self.kind!r}", where=where, fix=f"use one of {_KINDS}")
        object.__setattr__(self, "kind", kind)
        for key in ("rules", "reads", "writes"):  # lists from Python callers: hashable tuples
            object.__setattr__(self, key, tuple(getattr(self, key)))
        if not _is_int(self.layer) or self.layer < 0:
            raise CraftError(f"layer {self.layer!r}", where=where, fix="use a layer index >= 0")
        if self.sublayer not in ("attn", "mlp"):
            raise CraftError(f"sublayer {self.sublayer!r}", where=where, fix="use attn or mlp")
        if self.sublayer == "attn" and (not _is_int(self.head) or self.head < 0):
            raise CraftError(
                f"attention component with head {self.head!r}",
                where=where,
                fix="give its head index in the layer (>= 0)",
            )
        if self.sublayer == "mlp" and self.head is not None:
            raise CraftError(
                f"MLP component with head {self.head!r}", where=where, fix="set head to None"
            )
        if self.kind.sublayer != self.sublayer:
            raise CraftError(
                f"a {self.kind.value} component in the {self.sublayer} sublayer",
                where=where,
                fix=f"place {self.kind.value} components in the {self.kind.sublayer} sublayer",
            )

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON-ready dict (kind by value, directions as pairs)."""
        return {
            "name": self.name,
            "kind": self.kind.value,
            "layer": self.layer,
            "sublayer": self.sublayer,
            "head": self.head,
            "rules": list(self.rules),
            "reads": [d.to_json() for d in self.reads],
            "writes": [d.to_json() for d in self.writes],
        }

    @staticmethod
    def from_json(obj: Any, where: str = "component record") -> ComponentRecord:
        """Read :meth:`to_json`'s dict, or a legacy one (class-name kind, no reads/writes).

        Args:
            obj: the JSON object.
            where: names the record in errors (e.g. ``meta["components"][3]``).

        Raises:
            CraftError: not an object, an unknown kind, a missing or malformed field.
        """
        if not isinstance(obj, dict):
            raise CraftError(
                f"a component record is a {type(obj).__name__}",
                where=where,
                fix="write each component as a JSON object (ComponentRecord.to_json)",
            )
        where = f"{where} ({obj['name']!r})" if isinstance(obj.get("name"), str) else where
        kind = obj.get("kind")
        legacy = isinstance(kind, str) and kind in LEGACY_KINDS
        if not legacy and _kind(kind) is None:
            raise CraftError(
                f"unknown component kind {kind!r}",
                where=where,
                fix=f"use one of {_KINDS} (or recompile the model with `craft compile`)",
            )
        fields = _legacy_fields(obj, LEGACY_KINDS[kind], where) if legacy else dict(obj)
        _check_keys(fields, where)
        return _build(fields, where)


def _legacy_fields(obj: dict, kind: ComponentKind, where: str) -> dict:
    """A legacy record's fields in the current shape (kind by value, head/reads/writes)."""
    unknown = set(obj) - {"name", "kind", "layer", "sublayer", "head", "rules"}
    if unknown:
        raise CraftError(
            f"legacy component record with unknown keys {sorted(unknown)}",
            where=where,
            fix="recompile the model with `craft compile`",
        )
    fields = {"sublayer": kind.sublayer, "head": None, "rules": [], "reads": [], "writes": []}
    return fields | obj | {"kind": kind.value}


def _check_keys(fields: dict, where: str) -> None:
    missing = [k for k in _KEYS if k not in fields]
    unknown = sorted(set(fields) - set(_KEYS))
    if missing or unknown:
        raise CraftError(
            f"component record missing {missing} / with unknown keys {unknown}",
            where=where,
            fix=f"a record has exactly the keys {', '.join(_KEYS)}",
        )


def _directions(value: Any, key: str, where: str) -> tuple[Direction, ...]:
    ok = isinstance(value, list) and all(
        isinstance(d, list) and len(d) == 2 and isinstance(d[0], str) for d in value
    )
    if not ok:
        raise CraftError(
            f"{key} is {value!r}",
            where=where,
            fix=f'write {key} as a list of [name, value] pairs, e.g. [["prev", null]]',
        )
    return tuple(Direction.from_json(d) for d in value)


def _build(fields: dict, where: str) -> ComponentRecord:
    name, rules = fields["name"], fields["rules"]
    if not isinstance(name, str) or not name:
        raise CraftError(f"name {name!r}", where=where, fix="give the component a name")
    if not isinstance(rules, list) or not all(isinstance(r, str) for r in rules):
        raise CraftError(f"rules is {rules!r}", where=where, fix="write rules as a list of names")
    try:
        return ComponentRecord(
            name=name,
            kind=ComponentKind(fields["kind"]),
            layer=fields["layer"],
            sublayer=fields["sublayer"],
            head=fields["head"],
            rules=tuple(rules),
            reads=_directions(fields["reads"], "reads", where),
            writes=_directions(fields["writes"], "writes", where),
        )
    except CraftError as e:  # name the record by its place in the file
        if e.where is None or not str(e).startswith(e.where):
            raise
        raise CraftError(str(e).removeprefix(f"{e.where}: "), where=where) from None


def component_records(model: Any) -> tuple[ComponentRecord, ...]:
    """The records in ``model.meta["components"]`` (empty for trained or converted models).

    Raises:
        CraftError: a malformed list or record, named by its index and name.
    """
    raw = (getattr(model, "meta", None) or {}).get("components") or []
    if not isinstance(raw, list):
        raise CraftError(
            f"meta components is a {type(raw).__name__}",
            where='meta["components"]',
            fix="write a list of component records (or recompile the model)",
        )
    return tuple(
        ComponentRecord.from_json(obj, where=f'meta["components"][{i}]')
        for i, obj in enumerate(raw)
    )
