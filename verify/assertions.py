"""Ready assertions for researchers' own ``@given`` tests (see examples/test_toy_claims.py)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from craft.models import Transformer
from specs.model import Spec
from verify import batched


def assert_matches_spec(model: Transformer, spec: Spec, ctx: Sequence[int], max_kl: float = 1e-3):
    """KL(spec || model) after ``ctx`` is at most ``max_kl``; the message shows the tokens."""
    p, rules = batched.truth_at(spec, [list(ctx)])
    value = float(batched.kl(p, batched.model_logprobs(model, spec, [list(ctx)]))[0])
    rule = spec.rule_names()[int(rules[0])]
    assert value <= max_kl, (
        f"after {spec.vocab.decode(ctx)} (rule {rule}) KL(spec || model) = {value:.3g} > {max_kl}"
    )


def assert_attends(
    model: Transformer,
    spec: Spec,
    ctx: Sequence[int],
    head: str,
    positions: Sequence[int],
    min_share: float = 0.9,
):
    """Head ``"L.H"`` puts at least ``min_share`` of its |attention| from the last position
    on ``positions`` (columns: BOS is 0, ``ctx[i]`` is ``i + 1``)."""
    layer, index = (int(x) for x in head.split("."))
    row = np.abs(batched.attention(model, spec, [list(ctx)], layer, index)[0])
    share = float(row[list(positions)].sum() / max(row.sum(), 1e-30))
    assert share >= min_share, f"head {head} after {spec.vocab.decode(ctx)}: share {share:.3f}"
