"""What a rule kind implements: the :class:`Kind` hooks and its engine :class:`Part`.

A rule kind (``bigram``, ``trigram``, ...) is one module of :mod:`specs.kinds` holding
its frozen rule dataclass and one :class:`Kind` object: everything ``specs`` knows
about the kind. The generic modules never test a rule's type; they look its kind up
(:func:`specs.kinds.kind_of`, :func:`specs.kinds.by_key`) and call its hooks.

Adding a kind: write ``specs/kinds/<key>.py`` with the rule dataclass (a frozen
dataclass whose first field is ``name``) and a subclass of :class:`Kind` implementing
the hooks below, then add it to ``KINDS`` in ``specs/kinds/__init__.py``. The hooks,
in the order a spec's life calls them:

1. loading (:func:`specs.load.parse_spec`):
   ``schema`` (pydantic type of the YAML body, checked by :mod:`specs.schema`),
   :meth:`Kind.resolve` (names -> ids, every check needing the vocabulary, by
   :mod:`specs.resolve`), :meth:`Kind.unconditional` then :meth:`Kind.cues` and
   :meth:`Kind.covers` (coverage and shadowing, :mod:`specs.analysis`),
   :meth:`Kind.to_data` (the canonical form, hashed, :mod:`specs.canonical`; large
   kinds also override :meth:`Kind.json_chunks` and :meth:`Kind.json_size`);
2. the ground truth: :meth:`Kind.exact`, the oracle (:func:`specs.truth.next_dist_exact`
   asks the rules in priority order, the first that returns a distribution fires);
3. the vectorised engine (:mod:`specs.engine`): :meth:`Kind.compile` once per spec with
   all the rules of the kind, registering their distributions, then
   :meth:`Part.finish` once the code width is known, then :meth:`Part.local` (a table
   on ``(x[t-1], x[t])``) or :meth:`Part.start` once per batch, whose step is called
   at every position ``t = 1, 2, ...`` in order; :meth:`Kind.state_bytes` sizes that
   state for :func:`specs.sample.sample_bytes`;
4. test contexts: :meth:`Kind.targeted_ending` (:mod:`specs.targeted`),
   :meth:`Kind.ending`, :meth:`Kind.near_endings` and :meth:`Kind.overlay`
   (:mod:`specs.nearmiss`).

A kind's rule must never fire at ``t = 1`` (context ``[<bos>, v]``) unless it fires
on ``v`` whatever came before (:meth:`Kind.unconditional`): the coverage check relies
on it. The tests compare :meth:`Kind.exact` with the engine on every position.

Shape glossary: ``B`` batch, ``T`` columns of a token array (BOS at column 0), ``V``
vocabulary size; per-token engine tables have ``V + 1`` entries (BOS last, matching
nothing).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from fractions import Fraction
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

from specs.core import Dist, Vocab

if TYPE_CHECKING:
    from specs.model import Rule, Spec
    from specs.names import NameResolver
    from specs.yamlpath import YamlPath

Step = Callable[[np.ndarray, int, np.ndarray], np.ndarray]
"""One position of a stateful part: ``(tokens int64 [B, T], t, current = tokens[:, t])
-> codes int [B]``, the smallest packed code among the part's rules that fire at ``t``
(``>= no_code`` where none does)."""


class DistIds(Protocol):
    """The engine's distribution numbering: :meth:`id` registers a distribution; the
    one-hot of token ``x`` has id ``x`` (``0 <= x < V``)."""

    def id(self, dist: Dist) -> int: ...


class Part:
    """A kind's share of the engine for one spec: all its rules, compiled.

    A candidate is packed as ``code = rule id * width + distribution id``; the engine
    takes the smallest code over all parts, so the rule of smallest id (highest
    priority) wins, and ``no_code = (number of rules + 1) * width`` means "no rule".
    """

    def finish(self, width: int, no_code: int) -> None:
        """Called once, after every distribution is registered: build the code tables."""

    def local(self) -> tuple[np.ndarray, np.ndarray] | None:
        """For a kind that reads only ``(x[t-1], x[t])``: ``(prev_class int [V + 1],
        codes int [C, V + 1])``, the code at ``t`` being ``codes[prev_class[x[t-1]],
        x[t]]``. The engine merges every local part into one table (one lookup)."""
        return None

    def start(self, batch: int, length: int) -> Step | None:
        """For a kind with per-sequence state: a fresh :data:`Step` for ``batch`` rows
        of at most ``length`` tokens after BOS."""
        return None


class Kind(ABC):
    """The hooks of one rule kind (see the module docstring for when each is called)."""

    key: ClassVar[str]  # the YAML key of a rule item: `- bigram: {...}`
    rule_class: ClassVar[type]  # the frozen rule dataclass
    schema: ClassVar[Any]  # pydantic type of the YAML body

    @abstractmethod
    def resolve(
        self, name: str, body: Any, names: NameResolver, path: YamlPath, max_len: int
    ) -> Rule:
        """The validated raw body (``schema``) at ``path`` -> the rule; raises a one-line
        :class:`~specs.errors.CraftError` naming the YAML path and the fix."""

    @abstractmethod
    def to_data(self, rule: Rule, vocab: Vocab) -> Any:
        """The canonical body: names resolved to tokens in vocabulary order, exact
        fraction strings; ``resolve`` of it gives back an equal rule."""

    def json_chunks(self, rule: Rule, vocab: Vocab, cache: dict[int, Any]) -> Iterator[str]:
        """Compact JSON of :meth:`to_data`, in pieces (``cache`` is shared by the rules
        of one spec, for pieces repeated between them)."""
        yield dumps(self.to_data(rule, vocab))

    def json_size(self, rule: Rule, vocab: Vocab, cache: dict[int, Any]) -> int:
        """Bytes of :meth:`json_chunks`, ideally without writing them."""
        return len(dumps(self.to_data(rule, vocab)).encode("utf-8"))

    def unconditional(self, rule: Rule) -> frozenset[int]:
        """The tokens ``x[t]`` on which the rule fires whatever came before (bigram
        keys). Every token must be one for some rule (coverage)."""
        return frozenset()

    @abstractmethod
    def cues(self, rule: Rule) -> frozenset[int]:
        """Every token ``x[t]`` on which the rule can fire (its last-token set)."""

    def covers(self, earlier: Rule, rule: Rule) -> bool:
        """Whether ``earlier`` (a rule of this kind) matches every context ``rule`` (also
        of this kind) matches: a sufficient condition for ``rule`` to be shadowed."""
        return False

    @abstractmethod
    def exact(self, rule: Rule, x: Sequence[int], vocab_size: int) -> Dist | None:
        """The oracle: the distribution the rule gives after ``x[0..t]`` (``x[0]`` is
        BOS, ``t = len(x) - 1 >= 1``), or None when its condition does not hold."""

    @abstractmethod
    def compile(self, rules: Sequence[tuple[int, Rule]], dists: DistIds, vocab_size: int) -> Part:
        """The engine part of all the spec's rules of this kind, as (rule id, rule) in
        priority order; registers every distribution they can give."""

    def state_bytes(self, rule: Rule, batch: int, length: int) -> int:
        """Memory of the rule's per-batch engine state beyond a few [B] vectors."""
        return 0

    @abstractmethod
    def targeted_ending(self, spec: Spec, rule: Rule, rng: np.random.Generator) -> list[int]:
        """Tokens a context must end with for the rule's condition to hold (a random
        prefix goes before them); at most ``spec.max_len`` tokens."""

    @abstractmethod
    def ending(self, spec: Spec, rule: Rule, rng: np.random.Generator) -> list[int]:
        """Like :meth:`targeted_ending`, drawn over the whole range the spec allows."""

    @abstractmethod
    def near_endings(self, spec: Spec, rule: Rule, rng: np.random.Generator) -> list[list[int]]:
        """Endings at every boundary of the condition: just outside it, on its edge."""

    @abstractmethod
    def overlay(
        self, spec: Spec, rule: Rule, ctx: list[int], rng: np.random.Generator
    ) -> list[int] | None:
        """The non-empty ``ctx`` edited before its last token so that the condition
        holds at its end too, or None when its last token cannot satisfy it."""


# ---- helpers shared by the kinds -------------------------------------------------


def dumps(obj: Any) -> str:
    """Compact JSON, as the canonical form writes it."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def dist_data(vocab: Vocab, dist: Dist) -> dict[str, str]:
    """A distribution's canonical form: ``{token: "a/b"}``, zeros omitted."""
    return {vocab.tokens[i]: str(p) for i, p in dist.items}


def token_list(vocab: Vocab, ids: frozenset[int]) -> list[str]:
    """A selector's canonical form: its tokens in vocabulary order."""
    return [vocab.tokens[i] for i in sorted(ids)]


def one_hot(vocab_size: int, token: int) -> Dist:
    return Dist(vocab_size, ((token, Fraction(1)),))


def mask(vocab_size: int, ids: frozenset[int]) -> np.ndarray:
    """bool [V + 1]: membership of every token (BOS, index V, is never a member)."""
    out = np.zeros(vocab_size + 1, dtype=bool)
    out[sorted(ids)] = True
    return out


def compact(table: np.ndarray) -> np.ndarray:
    """Big index tables in the smallest signed int dtype that holds them (memory)."""
    if table.size <= 1 << 16:
        return table.astype(np.int64)
    hi = int(table.max(initial=0))
    lo = int(table.min(initial=0))
    dtype = np.int16 if lo >= -(2**15) and hi < 2**15 else np.int32
    return table.astype(dtype)


def pick(rng: np.random.Generator, ids) -> int:
    """One of ``ids``, uniformly."""
    return int(rng.choice(sorted(ids)))


def kin(spec: Spec, members: frozenset[int]) -> frozenset[int]:
    """Tokens sharing a category with some member but not members themselves."""
    names = spec.vocab.tokens
    cats = {spec.vocab.category_of(names[i]) for i in members}
    out = frozenset().union(*(spec.vocab.resolve(c) for c in cats)) if cats else frozenset()
    return out - members


def filler(spec: Spec, rng: np.random.Generator, n: int, avoid: frozenset[int]) -> list[int]:
    """``n`` random tokens, none in ``avoid`` (all tokens when that leaves none)."""
    allowed = sorted(set(range(len(spec.vocab))) - avoid) or list(range(len(spec.vocab)))
    return [allowed[i] for i in rng.integers(0, len(allowed), size=n)]
