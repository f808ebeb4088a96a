"""Compact residual codes: named features that share residual dimensions.

A one-hot layout spends one dimension per token, per position and per previous token.
A compact layout keeps every dimension named (so weights are still written from named
directions) but gives each *feature* a code vector over several of them:

* ``tok:v = cls:<class of v> + idx:<index of v in its category>``. Classes are the
  coarsest partition of the vocabulary that the circuit never needs to split on the
  query side: same category, same direct-path row, same membership in every rule's
  effective cue. So every direct-path row and every cue set is an *exact* linear
  functional (a sum of ``cls`` dimensions). Token identity within a class is carried by
  ``idx``: ``(category, idx)`` names a token uniquely.
* ``bos`` is its own class; ``one`` (1 at every non-BOS position) is ``pos:1``.
* ``pos:1, pos:u, pos:u2`` hold 1, ``u = (t - c) / w`` and ``u^2`` (centred, scaled): every
  positional score the heads need is a quadratic in ``(t, s)``, i.e. a bilinear form
  in ``(1, u_t, u_t^2) x (1, u_s, u_s^2)`` (see :mod:`craft.compiler.compact.heads`).
* ``prevcat:K, previdx:i`` (written by the previous-token head) and ``outcat:K,
  outidx:i`` (read only by the unembedding) code a token by its category and index.

An identity read from a ``(category, idx)`` code is approximate: the functional
``1/2 cat:K + 1/2 idx:i`` is 1 on the token, 1/2 on a token sharing only its category or
only its index (a *collision*), 0 otherwise. Every such functional's values over the
whole vocabulary are computed (:meth:`Codes.values`), and the heads take their margins
from the computed worst collision, never from an assumed one.

Shape glossary: V vocabulary (BOS excluded), D residual width.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from craft.compiler.analysis import Analysis
from craft.models.layout import BOS_DIR, Direction, Layout

Vec = dict[Direction, float]
HALF = 0.5


def _add(*vecs: Vec) -> Vec:
    out: Vec = {}
    for v in vecs:
        for d, w in v.items():
            out[d] = out.get(d, 0.0) + w
    return {d: w for d, w in out.items() if w}


def scale(vec: Vec, w: float) -> Vec:
    return {d: x * w for d, x in vec.items()}


@dataclass(frozen=True)
class Separation:
    """A functional's values: ``low``/``phi`` the min/max on its members, ``high`` the max
    off them (the worst collision), with the tokens where the min and max are reached."""

    low: float
    phi: float
    high: float
    member: int  # token id reaching ``low`` (-1: none)
    other: int  # token id reaching ``high`` (-1: none)

    @staticmethod
    def worst(seps: list[Separation]) -> Separation:
        """The combined worst case of several functionals read by one head."""
        lo = min(seps, key=lambda s: s.low)
        hi = max(seps, key=lambda s: s.high)
        return Separation(lo.low, max(s.phi for s in seps), hi.high, lo.member, hi.other)


@dataclass(frozen=True)
class Codes:
    """Token classes, category indices and the compact residual layout of one spec.

    Attributes:
        classes: token ids of each class (BOS excluded), in vocabulary order.
        class_of, cat_of, idx_of: per token id, its class, category and index in it.
        prev_cats, out_cats: category names the prev and output codes carry.
        prev_idx: whether the prev code carries ``previdx`` (an identity within a category
            is read from it).
        reads: non-deterministic rules whose distribution the unembedding holds (``read:r``).
        layout: the named dimensions, in order.
    """

    an: Analysis
    classes: tuple[tuple[int, ...], ...]
    class_of: tuple[int, ...]
    cat_of: tuple[str, ...]
    idx_of: tuple[int, ...]
    prev_cats: tuple[str, ...]
    prev_idx: bool
    out_cats: tuple[str, ...]
    reads: tuple[str, ...]
    layout: Layout

    # -- features as code vectors ------------------------------------------------------
    def cls(self, c: int) -> Direction:
        return Direction("cls", self.class_name(c))

    def class_name(self, c: int) -> str:
        toks = self.an.spec.vocab.tokens
        members = self.classes[c]
        cat = self.cat_of[members[0]]
        if len(members) == len(self.an.spec.vocab.resolve(cat)):
            return cat
        names = [toks[v] for v in members]
        return "|".join(names) if len(names) <= 3 else f"{names[0]}|..+{len(names) - 1}"

    def tok(self, v: int) -> Vec:
        """``tok:v``: the embedding of token ``v`` (BOS: ``bos``)."""
        if v == self.an.spec.vocab.bos_id:
            return {BOS_DIR: 1.0}
        return {self.cls(self.class_of[v]): 1.0, Direction("idx", self.idx_of[v]): 1.0}

    def one(self) -> Vec:
        """1 at every non-BOS position: ``pos:1`` where positions are coded (so every
        constant of a positional score sits in the position embedding, where the position
        circuits read it), else the sum of the non-BOS class dimensions."""
        if Direction("pos", 1) in self.layout:
            return {Direction("pos", 1): 1.0}
        return {self.cls(c): 1.0 for c in range(len(self.classes))}

    def cls_set(self, tokens: Iterable[int]) -> Vec:
        """Exact indicator of a token set that is a union of classes (a cue set)."""
        s = set(tokens)
        out: Vec = {}
        for c, members in enumerate(self.classes):
            inside = [v in s for v in members]
            if any(inside) and not all(inside):
                raise ValueError(f"{sorted(s)} splits class {self.class_name(c)}")
            if all(inside):
                out[self.cls(c)] = 1.0
        return out

    def prev(self, v: int) -> Vec:
        """The prev code of token ``v`` (what the previous-token head writes)."""
        out: Vec = {}
        if self.cat_of[v] in self.prev_cats:
            out[Direction("prevcat", self.cat_of[v])] = 1.0
        if self.prev_idx:
            out[Direction("previdx", self.idx_of[v])] = 1.0
        return out

    def out(self, v: int) -> Vec:
        """The output code of token ``v``: the unembedding adds 1 to every token sharing
        its category and 1 to every token sharing its index (2 on ``v`` itself)."""
        return {Direction("outcat", self.cat_of[v]): 1.0, Direction("outidx", self.idx_of[v]): 1.0}

    def tok_set(self, tokens: Iterable[int]) -> Vec:
        """Indicator of a token set read from the token code (key side of a detector):
        exact for whole classes, ``1/2 cls + 1/2 idx`` per member otherwise."""
        s = set(tokens)
        parts: list[Vec] = []
        for c, members in enumerate(self.classes):
            inside = [v for v in members if v in s]
            if len(inside) == len(members):
                parts.append({self.cls(c): 1.0})
            elif inside:
                parts.append({self.cls(c): HALF})
                parts += [{Direction("idx", self.idx_of[v]): HALF} for v in inside]
        return _add(*parts)

    def prev_set(self, tokens: Iterable[int]) -> Vec:
        """Indicator of a token set read from the prev code: exact for whole categories,
        ``1/2 prevcat + 1/2 previdx`` per member otherwise (collisions computed by
        :meth:`values`)."""
        s = set(tokens)
        vocab = self.an.spec.vocab
        parts: list[Vec] = []
        for cat in dict.fromkeys(self.cat_of[v] for v in sorted(s)):
            members = [v for v in vocab.resolve(cat) if v in s]
            if len(members) == len(vocab.resolve(cat)):
                parts.append({Direction("prevcat", cat): 1.0})
                continue
            parts.append({Direction("prevcat", cat): HALF})
            parts += [{Direction("previdx", self.idx_of[v]): HALF} for v in members]
        return _add(*parts)

    # -- computed interference ---------------------------------------------------------
    def matrix(self, code) -> np.ndarray:
        """``[V, D]``: the code of every token under ``code`` (``self.tok``, ``self.prev``)."""
        out = np.zeros((len(self.an.spec.vocab), len(self.layout)))
        for v in range(len(self.an.spec.vocab)):
            for d, w in code(v).items():
                out[v, self.layout.index(d)] = w
        return out

    def vector(self, vec: Vec) -> np.ndarray:
        out = np.zeros(len(self.layout))
        for d, w in vec.items():
            out[self.layout.index(d)] += w
        return out

    def values(self, functional: Vec, code) -> np.ndarray:
        """``[V]``: the functional read from every token's code (exact: 1 on members, 0 off)."""
        return self.matrix(code) @ self.vector(functional)

    def separation(self, functional: Vec, members: Iterable[int], code) -> Separation:
        """How well a functional read through ``code`` separates ``members`` from the rest."""
        vals = self.values(functional, code)
        inside = np.zeros(len(vals), dtype=bool)
        inside[list(members)] = True
        ids = np.arange(len(vals))
        if not inside.any() or inside.all():
            return Separation(1.0, 1.0, 0.0, -1, -1)
        low_at = int(ids[inside][vals[inside].argmin()])
        high_at = int(ids[~inside][vals[~inside].argmax()])
        return Separation(
            float(vals[low_at]), float(vals[inside].max()), float(vals[high_at]), low_at, high_at
        )

    def features(self) -> dict[str, list]:
        """Every token feature's code vector, for ``craft inspect``: name -> [[dim, w], ...]."""
        toks = self.an.spec.vocab.tokens
        return {
            f"tok:{toks[v]}": [[str(d), w] for d, w in self.tok(v).items()]
            for v in range(len(toks))
        }


def _classes(an: Analysis) -> tuple[tuple[tuple[int, ...], ...], tuple[int, ...]]:
    """Tokens grouped by (category, direct row, membership in every rule's effective cue)."""
    vocab = an.spec.vocab
    groups: dict[tuple, list[int]] = {}
    for v, t in enumerate(vocab.tokens):
        sig = (vocab.category_of(t), an.direct[v].items, tuple(v in r.cue for r in an.rules))
        groups.setdefault(sig, []).append(v)
    classes = tuple(tuple(g) for g in groups.values())
    class_of = [0] * len(vocab)
    for c, members in enumerate(classes):
        for v in members:
            class_of[v] = c
    return classes, tuple(class_of)


def build_codes(
    an: Analysis,
    prev_sets: list[frozenset[int]],
    out_all: bool,
    positions: tuple[Direction, ...] = (),
) -> Codes:
    """Classes from the spec's direct rows and cue sets; prev and output codes sized by
    what the heads read (``prev_sets``: token sets read from the prev code; ``out_all``:
    whether any token can be an output boost, i.e. induction copies; ``positions``: the
    position dimensions, none when no head reads positions)."""
    vocab = an.spec.vocab
    cat_of = tuple(vocab.category_of(t) for t in vocab.tokens)
    idx_of = tuple(
        vocab.categories[vocab.category_names().index(c)][1].index(t)
        for t, c in zip(vocab.tokens, cat_of, strict=True)
    )
    classes, class_of = _classes(an)
    prev_tokens = set().union(*prev_sets) if prev_sets else set()
    prev_cats = tuple(dict.fromkeys(cat_of[v] for v in sorted(prev_tokens)))
    prev_idx = any(not set(vocab.resolve(cat_of[v])) <= s for s in prev_sets for v in s)
    targets = {r.target for r in an.rules if r.target is not None}
    out_cats = tuple(dict.fromkeys(cat_of[v] for v in range(len(vocab)) if out_all or v in targets))
    reads = tuple(r.name for r in an.rules if not r.deterministic)
    codes = Codes(
        an, classes, class_of, cat_of, idx_of, prev_cats, prev_idx, out_cats, reads, Layout(())
    )
    names, n_idx = vocab.category_names(), max(idx_of) + 1
    dims = [BOS_DIR, *(codes.cls(c) for c in range(len(classes)))]
    dims += [Direction("idx", i) for i in range(n_idx)]
    dims += list(positions)
    dims += [Direction("prevcat", k) for k in names if k in prev_cats]
    if prev_idx:
        dims += [Direction("previdx", i) for i in range(n_idx)]
    if out_cats:
        dims += [Direction("outcat", k) for k in names if k in out_cats]
        dims += [Direction("outidx", i) for i in range(n_idx)]
    dims += [Direction("read", r) for r in reads]
    return dataclasses.replace(codes, layout=Layout(tuple(dims)))
