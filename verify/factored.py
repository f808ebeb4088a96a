"""Low-rank factored circuits: compare ``N x M`` matrices through ``r x r`` Gram matrices.

A weight circuit is a product of thin factors: the direct path is ``W_E @ W_U``
(rank ``D``), a head's full OV is ``(E W_V) @ (W_O W_U)`` (rank ``E``), a full QK is
``(E W_Q) @ (E W_K)^T``. With a 20,000-token vocabulary the product has 4e8 entries
(3.2 GB in float64), but everything a comparison needs follows from the factors.

Shape glossary: N rows, M columns, r (r_a, r_b) ranks of the factors.

Formulas (``A = L_a R_a``, ``B = L_b R_b``, ``1`` a vector of ones, ``*`` elementwise):

* inner product ``<A, B>_F = tr(A^T B) = tr(R_a^T L_a^T L_b R_b) = sum((L_a^T L_b) * (R_a R_b^T))``:
  two Gram matrices ``[r_a, r_b]``, cost ``O((N + M) r_a r_b)``, never ``O(N M)``.
* norm ``||A||_F^2 = <A, A>``; cosine ``<A, B> / (||A|| ||B||)``.
* centring is a change of factors, so it stays factored:
  rows ``A - A 1 1^T / M = L (R - R 1 1^T / M)`` (centre each row of ``R``);
  columns ``A - 1 1^T A / N = (L - 1 1^T L / N) R``;
  all entries ``A - m 1 1^T = [L, -m 1] [R; 1^T]`` with ``m = (1^T L)(R 1) / (N M)``
  (rank + 1); centring everything then taking the cosine is Pearson correlation.
* elementwise product (the tensor family's bilinear QK):
  ``(L1 R1) * (L2 R2) = (L1 (.) L2)(R1 (.) R2)`` with the row-wise Kronecker product
  ``(L1 (.) L2)[i, a r2 + b] = L1[i, a] L2[i, b]`` (rank ``r1 r2``).
* the nonzero eigenvalues of a square ``L R`` are those of the ``r x r`` matrix ``R L``.

:func:`inner` materialises instead when that is cheaper (small ``N M``, large ranks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from specs.errors import CraftError

Centre = Literal["none", "rows", "columns", "all"]
Method = Literal["auto", "dense", "factored"]

DENSE_LIMIT = 1 << 22  # entries: "auto" never materialises a product larger than this
ZERO_TOL = 1e-9  # relative to Factored.reference: a circuit this small counts as zero


@dataclass(frozen=True, eq=False)
class Factored:
    """The matrix ``left @ right`` kept as its factors.

    Attributes:
        left: ``[N, r]``.
        right: ``[r, M]``.
        ref: the magnitude the product is judged against when deciding that it is zero
            up to rounding: the product of the norms of the weights it was multiplied
            from (``||W_E|| ||W_U||`` for the direct path); 0 means ``||left|| ||right||``.
    """

    left: np.ndarray
    right: np.ndarray
    ref: float = 0.0

    def __post_init__(self) -> None:
        if self.left.ndim != 2 or self.right.ndim != 2 or self.left.shape[1] != self.right.shape[0]:
            raise CraftError(
                f"factors {self.left.shape} and {self.right.shape} do not multiply",
                fix="pass left [N, r] and right [r, M]",
            )

    @property
    def shape(self) -> tuple[int, int]:
        return self.left.shape[0], self.right.shape[1]

    @property
    def reference(self) -> float:
        return self.ref or float(np.linalg.norm(self.left) * np.linalg.norm(self.right))

    @property
    def rank(self) -> int:
        """Inner dimension ``r`` (an upper bound on the true rank)."""
        return self.left.shape[1]

    def dense(self) -> np.ndarray:
        """The ``[N, M]`` product (materialised: only for small circuits)."""
        return self.left @ self.right

    def rows(self, ids: np.ndarray | list[int]) -> Factored:
        """Keep rows ``ids`` (e.g. drop the BOS row)."""
        return Factored(self.left[np.asarray(ids)], self.right, self.ref)

    def columns(self, ids: np.ndarray | list[int]) -> Factored:
        return Factored(self.left, self.right[:, np.asarray(ids)], self.ref)

    def scale(self, c: float) -> Factored:
        return Factored(self.left * c, self.right, self.ref * abs(c))

    def transpose(self) -> Factored:
        return Factored(self.right.T, self.left.T, self.ref)

    def centre(self, how: Centre) -> Factored:
        """Subtract row means, column means or the global mean (see the module formulas)."""
        if how == "none":
            return self
        if how == "rows":
            return Factored(
                self.left, self.right - self.right.mean(axis=1, keepdims=True), self.ref
            )
        if how == "columns":
            return Factored(self.left - self.left.mean(axis=0, keepdims=True), self.right, self.ref)
        if how == "all":
            n, m = self.shape
            mean = float(self.left.sum(axis=0) @ self.right.sum(axis=1)) / (n * m)
            left = np.concatenate([self.left, np.full((n, 1), -mean)], axis=1)
            right = np.concatenate([self.right, np.ones((1, m))], axis=0)
            return Factored(left, right, self.ref)
        raise CraftError(f"unknown centring {how!r}", fix="use none, rows, columns or all")

    def hadamard(self, other: Factored) -> Factored:
        """Elementwise product ``(L1 R1) * (L2 R2)``, factored by row-wise Kronecker products.

        When the ``[N, M]`` product is smaller than the rank-``r1 r2`` factors (small
        vocabularies, wide heads), it is kept dense as ``product @ I``.
        """
        if self.shape != other.shape:
            raise CraftError(f"elementwise product of shapes {self.shape} and {other.shape}")
        n, m = self.shape
        ref = self.reference * other.reference
        if n * m <= min(DENSE_LIMIT, (n + m) * self.rank * other.rank):  # smaller dense
            return Factored(self.dense() * other.dense(), np.eye(m), ref)
        left = (self.left[:, :, None] * other.left[:, None, :]).reshape(n, -1)
        right = (self.right[:, None, :] * other.right[None, :, :]).reshape(-1, m)
        return Factored(left, right, ref)

    def eigenvalues(self) -> np.ndarray:
        """Nonzero eigenvalues (padded with zeros to ``min(N, r)``) of a square circuit."""
        n, m = self.shape
        if n != m:
            raise CraftError(f"eigenvalues of a non-square circuit {self.shape}")
        if n <= self.rank:
            return np.linalg.eigvals(self.dense())
        return np.linalg.eigvals(self.right @ self.left)


Matrix = np.ndarray | Factored


def as_factored(a: Matrix) -> Factored:
    """A dense ``[N, M]`` array as ``a @ I`` (no copy of ``a``)."""
    return a if isinstance(a, Factored) else Factored(np.asarray(a), np.eye(a.shape[1]))


def _dense_is_cheaper(a: Factored, b: Factored) -> bool:
    n, m = a.shape
    dense_cost = n * m * (a.rank + b.rank)
    factored_cost = (n + m) * a.rank * b.rank
    return n * m <= DENSE_LIMIT and dense_cost <= factored_cost


def inner(a: Matrix, b: Matrix, method: Method = "auto") -> float:
    """Frobenius inner product ``<A, B>_F = sum(A * B)``."""
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return float(np.vdot(a, b))
    fa, fb = as_factored(a), as_factored(b)
    if fa.shape != fb.shape:
        raise CraftError(f"cannot compare circuits of shapes {fa.shape} and {fb.shape}")
    if method == "dense" or (method == "auto" and _dense_is_cheaper(fa, fb)):
        return float(np.vdot(fa.dense(), fb.dense()))
    # torch's matmul: its thread pool obeys torch.set_num_threads, OpenBLAS's does not
    gram_left = _t(fa.left).T @ _t(fb.left)  # [r_a, r_b]
    gram_right = _t(fa.right) @ _t(fb.right).T  # [r_a, r_b]
    return float((gram_left * gram_right).sum())


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a, dtype=np.float64))


def norm(a: Matrix, method: Method = "auto") -> float:
    """Frobenius norm (from the Gram matrices when factored)."""
    return float(np.sqrt(max(inner(a, a, method), 0.0)))


def _centred(a: Matrix, how: Centre) -> Matrix:
    if isinstance(a, Factored):
        return a.centre(how)
    a = np.asarray(a, dtype=np.float64)
    if how == "rows":
        return a - a.mean(axis=1, keepdims=True)
    if how == "columns":
        return a - a.mean(axis=0, keepdims=True)
    return a - a.mean() if how == "all" else a


def similarity(a: Matrix, b: Matrix, centre: Centre = "all", method: Method = "auto") -> float:
    """Cosine of two circuits after centring; 1 means equal up to a positive scale.

    ``centre="all"`` gives Pearson correlation; ``"rows"`` removes each row's mean, which
    makes logit-space circuits (direct path, OV: rows are inputs, columns are logits)
    blind to a constant added to all logits, the one symmetry of softmax outputs.
    Dense arrays and :class:`Factored` circuits mix freely; two zero circuits give 1,
    one zero circuit gives 0 (a factored circuit is zero when its norm is below
    ``ZERO_TOL`` times its ``reference``, the norms of the weights it came from: a
    head whose query and key spaces are orthogonal has an exactly zero QK, which a
    gauge turns into rounding noise).

    Args:
        a, b: ``[N, M]`` circuits (arrays or factored).
        centre: none, rows, columns or all.
        method: ``auto`` (cheapest), ``dense`` or ``factored`` for factored inputs.
    """
    ca, cb = _centred(a, centre), _centred(b, centre)
    na, nb = norm(ca, method), norm(cb, method)
    zero_a, zero_b = _is_zero(ca, na), _is_zero(cb, nb)
    if zero_a or zero_b:
        return 1.0 if zero_a and zero_b else 0.0
    return inner(ca, cb, method) / (na * nb)


def _is_zero(a: Matrix, n: float) -> bool:
    """Zero up to rounding: ``||A|| <= ZERO_TOL * a.reference`` (a gauge leaves ~1e-16 noise)."""
    return n <= ZERO_TOL * a.reference if isinstance(a, Factored) else n == 0.0
