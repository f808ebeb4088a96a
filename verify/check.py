"""Checking claims: Hypothesis searches for a counterexample, batched on the model.

Each claim becomes a probe (a strategy of single contexts or pairs, a batched
``values`` function, a threshold) handed to :func:`verify.search.search`, the engine
the Tracr agreement check shares. Each example Hypothesis proposes is a *batch* of
contexts, evaluated in one forward pass; a failing batch shrinks (Hypothesis deletes
elements, shortens lists, lowers token ids) to one minimal context: the shortest with
the fewest distinct tokens. ``target()`` steers the search towards the worst violation,
runs are seeded, and a replay database re-checks last run's counterexample first; its
entries are keyed by the model's digest, the spec, the claim, the seed and the budget
(:mod:`verify.replay`), so the verdict depends on those alone. Contexts span every
length up to ``max_len`` and include every rule's boundary contexts
(:mod:`specs.nearmiss`); each result says what it compared, which way it fails, the
distinct contexts and lengths it covered, and, for a head role, the behavioural effect
at its counterexample (:mod:`verify.results`).
When Hypothesis finds nothing, the probe's :class:`verify.sweep.Sweep` checks
``SWEEP_PER_EXAMPLE`` times as many contexts (or pairs) again, drawn in bulk under the
same conditions: breadth at thousands of contexts per second, where Hypothesis gives a
few hundred.

:func:`check_all` first checks that the model fits the spec and that every claim fits
both (:func:`verify.claims.validate`), so a bad claims file stops before any search. A
model whose outputs are NaN or inf (a diverged run) fails its claims with the
non-finite value reported, never crashes the search.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from hypothesis import strategies as st

from craft.compiler import all_hold, analyse
from craft.compiler.conditions import stated
from craft.models import Transformer, component_records, load_model
from specs.model import Spec
from specs.sample import sample
from specs.targeted import contexts_for_rule
from verify import batched, kinds
from verify.claims import (
    MEAN_SEQUENCES,
    Ablation,
    Claim,
    HeadRole,
    ModelsAgree,
    Patching,
    RuleHolds,
    WindowOnly,
    check_model,
    head_of,
    validate,
)
from verify.replay import model_digest, replay_key
from verify.results import MEASURES, Coverage, Effect, Result, coverage
from verify.search import search
from verify.strategies import (
    contexts,
    counterfactual_pairs,
    fired,
    long_strings,
    repeated,
    window_pairs,
)
from verify.sweep import (
    Sweep,
    contexts_sweep,
    counterfactual_sweep,
    repeated_sweep,
    sampled_contexts,
    window_sweep,
)

SWEEP_PER_EXAMPLE = 4  # bulk-drawn contexts checked per Hypothesis example
DEFAULT_KL = 1e-3  # a rule's bound when the model states none (a trained model)
WILSON_Z = 1.6448536269514722  # one-sided 95%: P(Z > z) = 0.05


@dataclass
class _Probe:
    """How to test one claim on a batch: per-context values, violated when > threshold."""

    strategy: st.SearchStrategy
    values: object  # Callable[[list[list[int]]], np.ndarray]
    threshold: float
    sweep: Sweep | None = None  # the same items drawn in bulk (verify.sweep)
    answers: set = field(default_factory=set)  # distinct expected distributions seen
    patch: dict | None = None  # ablation: the hooks that ablate the head


def _kl_probe(model, spec, c: Claim, body: RuleHolds, where) -> _Probe:
    probe = _Probe(
        contexts(spec, rule=body.rule).filter(where),
        None,
        body.max_kl,
        contexts_sweep(spec, body.rule, where),
    )

    def values(batch):
        p, _ = batched.truth_at(spec, batch)
        logq = batched.model_logprobs(model, spec, batch)
        probe.answers.update(row.tobytes() for row in p)  # distinct distributions
        if body.argmax:
            return (p[np.arange(len(batch)), logq.argmax(-1)] < p.max(-1) - 1e-12).astype(float)
        return batched.kl(p, logq)

    probe.values = values
    return probe


def _ablation(model: Transformer, spec: Spec, body: Ablation, seed_: int) -> dict:
    """The claim's ablation patch; ``mean`` computes the head's mean output per position
    ``[W, D]`` once, over ``MEAN_SEQUENCES`` sequences sampled from the spec."""
    layer, head = head_of(body.head)
    if body.method == "zero":
        return batched.zero_head(layer, head)
    tokens, _ = sample(spec, MEAN_SEQUENCES, spec.max_len, seed_)
    return batched.mean_head(layer, head, batched.head_mean(model, tokens, layer, head))


def _probe(model: Transformer, spec: Spec, c: Claim, where, seed_: int = 0) -> _Probe:
    body = c.body
    if isinstance(body, RuleHolds):
        return _kl_probe(model, spec, c, body, where)
    if isinstance(body, ModelsAgree):
        other = load_model(body.other)
        strat = contexts(spec, rule=body.rule) if body.rule else long_strings(spec, 1)

        def agree(batch):
            return batched.kl_between(
                batched.model_logprobs(model, spec, batch),
                batched.model_logprobs(other, spec, batch),
            )

        some = contexts_sweep(spec, body.rule, lambda ctx: len(ctx) >= 1)
        return _Probe(strat, agree, body.max_kl, some)
    if isinstance(body, WindowOnly):
        pairs = window_pairs(spec, body.rule, body.window)
        bulk = window_sweep(spec, body.rule, body.window)
        return _Probe(pairs, _window_values(model, spec), body.max_kl, bulk)
    if isinstance(body, HeadRole):
        return _role_probe(model, spec, body)
    if isinstance(body, Ablation):
        patch = _ablation(model, spec, body, seed_)
        spares = lambda ctx: fired(spec, ctx) not in body.breaks  # noqa: E731
        spared = contexts(spec).filter(spares)

        def extra(batch):
            p, _ = batched.truth_at(spec, batch)
            before = batched.kl(p, batched.model_logprobs(model, spec, batch))
            after = batched.model_logprobs(model, spec, batch, patch, per_row=False)
            return batched.kl(p, after) - before

        bulk = contexts_sweep(spec, None, spares)
        return _Probe(spared, extra, body.max_other, bulk, patch=patch)
    if isinstance(body, Patching):
        return _patching_probe(model, spec, body)
    raise TypeError(type(body).__name__)


def _patching_probe(model, spec, body: Patching) -> _Probe:
    layer, head = head_of(body.head)
    pairs = counterfactual_pairs(spec, body.category, rule=body.rule).filter(
        lambda pr: fired(spec, pr[1]) == body.rule
    )

    def values(batch):
        clean, corrupt = [a for a, _ in batch], [b for _, b in batch]
        out = np.zeros(len(batch))
        for receiver, donor in ((corrupt, clean), (clean, corrupt)):
            name = "clean->corrupt" if receiver is corrupt else "corrupt->clean"
            if body.direction not in ("both", name):
                continue
            want = batched.model_logprobs(model, spec, donor)
            got = batched.patched_logprobs(model, spec, receiver, donor, layer, head)
            out = np.maximum(out, batched.kl_between(want, got))
        return out

    return _Probe(pairs, values, body.max_kl, counterfactual_sweep(spec, body.category, body.rule))


def _window_values(model, spec):
    def values(batch):  # both sides of every pair in one forward pass
        both = batched.model_logprobs(model, spec, [x for x, _ in batch] + [y for _, y in batch])
        return batched.kl_between(both[: len(batch)], both[len(batch) :])

    return values


def _role_probe(model, spec, body: HeadRole) -> _Probe:
    layer, head = head_of(body.head)
    if body.role == "previous-token":
        strat = long_strings(spec, 2)
        bulk = contexts_sweep(spec, None, lambda ctx: len(ctx) >= 2)
        target_of = lambda ctx: [len(ctx) - 1]  # noqa: E731
    elif body.role == "induction":
        strat = repeated(spec)
        if body.rule:
            strat = strat.filter(lambda c: fired(spec, c) == body.rule)
        bulk = repeated_sweep(spec, body.rule)

        def target_of(ctx):  # the positions after every earlier copy of the current token
            return [s + 2 for s in range(len(ctx) - 1) if ctx[s] == ctx[-1]]
    else:
        rule = next(r for r in spec.rules if r.name == body.rule)
        strat = contexts(spec, rule=body.rule)
        bulk = contexts_sweep(spec, body.rule, lambda ctx: True)
        lo, hi = rule.window

        def target_of(ctx):
            t = len(ctx)
            return [
                t - d for d in range(lo, hi + 1) if t - d >= 1 and ctx[t - d - 1] in rule.anchor
            ]

    def values(batch):
        rows = np.abs(batched.attention(model, spec, batch, layer, head))
        rows = rows / np.maximum(rows.sum(-1, keepdims=True), 1e-30)
        share = np.array([rows[i, target_of(c)].sum() for i, c in enumerate(batch)])
        return 1.0 - share  # violated when share < min_score

    return _Probe(strat, values, 1.0 - body.min_score, bulk)


def copying_score(model: Transformer, layer: int, head: int) -> float:
    """Re(sum of eigenvalues) / sum |eigenvalues| of the head's token->logit OV circuit
    ``W_E W_V W_O W_U`` (BOS row dropped): 1 for a pure copying head, -1 for anti-copying."""
    attn = model.blocks[layer].attn
    with torch.no_grad():
        n = model.cfg.n_out
        ov = model.embed.W_E[:n] @ attn.W_V[head] @ attn.W_O[head] @ model.unembed.W_U
    if not torch.isfinite(ov).all():  # a diverged model: no eigenvalues, the claim fails
        return math.nan
    eig = np.linalg.eigvals(ov.double().numpy())
    return float(eig.real.sum() / max(np.abs(eig).sum(), 1e-30))


def _copying(model, c: Claim, body: HeadRole) -> Result:
    score = copying_score(model, *head_of(body.head))
    passed = score >= body.min_score  # False for NaN
    measure, fails_if = MEASURES["head_role/copying"]
    return Result(
        c.name, c.kind, passed, None, score, body.min_score, 1, _loosened(c), None,
        measure, fails_if, 1, loosened=c.loosened,
    )  # fmt: skip


def _measure(c: Claim) -> tuple[str, str]:
    """What the claim's value is and which way it fails (:data:`verify.results.MEASURES`)."""
    if isinstance(c.body, RuleHolds) and c.body.argmax:
        return MEASURES["rule_holds/argmax"]
    return MEASURES[c.kind]


def _loosened(c: Claim) -> tuple[str, ...]:
    """A loosened bound is said with the claim, as a warning."""
    return (f"{c.name}: bound loosened: {c.loosened}",) if c.loosened else ()


def check_claim(
    model: Transformer,
    spec: Spec,
    c: Claim,
    *,
    examples: int = 200,
    batch: int = 64,
    seed_: int = 0,
    database: str | Path | None = None,
    where=None,
    sweep: int | None = None,
    model_sha: str | None = None,
) -> Result:
    """Search for a counterexample to ``c`` (or estimate its fraction when statistical).

    ``where(ctx) -> bool`` restricts the contexts; by default a claim marked
    ``exact_region`` on a compiled tensor model is restricted to where its stated
    conditions hold (that is where the compiler claims its bound).

    After Hypothesis' phases, a sweep checks ``sweep`` more contexts drawn in bulk
    (default ``SWEEP_PER_EXAMPLE * examples``; see :mod:`verify.sweep`). The replay
    database (if any) is keyed by the model's digest (``model_sha``, computed when not
    given), the spec, the claim, the seed and the budget (:mod:`verify.replay`).
    """
    if where is None:
        where = _region(model, spec) if c.exact_region else (lambda ctx: True)
    if isinstance(c.body, HeadRole) and c.body.role == "copying":
        return _copying(model, c, c.body)
    if c.fraction is not None:
        return _statistical(model, spec, c, examples, seed_, where)
    probe = _probe(model, spec, c, where, seed_)
    sweep_n = SWEEP_PER_EXAMPLE * examples if sweep is None else sweep
    key = None
    if database:
        sha = model_sha or model_digest(model)
        key = replay_key(sha, spec, c, seed=seed_, examples=examples, sweep=sweep_n, batch=batch)
    found = search(
        probe.strategy,
        probe.values,
        probe.threshold,
        name=c.name,
        examples=examples,
        batch=batch,
        seed_=seed_,
        database=database,
        sweep=probe.sweep,
        sweep_n=sweep_n,
        key=key,
    )
    failed = found.failed
    if not failed and found.distinct == 0:
        return _vacuous(c, probe.threshold)
    warnings = _loosened(c) + (() if failed else _trivial(c, probe, spec))
    measure, fails_if = _measure(c)
    base = Result(
        c.name, c.kind, not failed, None, _shown(c, found.worst), _shown(c, probe.threshold),
        found.distinct, warnings, None, measure, fails_if, found.evaluated,
        coverage(spec, found.items), loosened=c.loosened,
    )  # fmt: skip
    if not failed and isinstance(c.body, Ablation):
        return _breaks(model, spec, c, c.body, examples, seed_, base, probe.patch)
    if not failed:
        return base
    ctx = found.failing
    shown = ctx[0] if isinstance(ctx, tuple) else ctx
    out = replace(
        base,
        counterexample=spec.vocab.decode(shown),
        value=_shown(c, found.value),
        found_after=found.found_after,
    )
    if isinstance(c.body, HeadRole):
        effect = _effect(model, spec, c.body, list(shown), examples, seed_)
        out = replace(out, effect=effect, warnings=(*out.warnings, f"{c.name}: {effect.line()}"))
    return out


def _effect(model, spec: Spec, body: HeadRole, ctx: list[int], examples: int, seed_: int):
    """The behaviour at a head-role counterexample ``ctx``: the KL there of the rule
    that fires, and the shortest context found where the output breaks the model's
    bound, searched (a ``rule_holds`` claim each, a smaller budget) over the rules the
    head serves (:func:`_served`), the first that fails giving it."""
    bounds = model.meta.get("bounds") or {}

    def bound(rule: str) -> float:
        return max(float(bounds.get(rule, DEFAULT_KL)), 1e-9)

    here_rule = fired(spec, ctx)
    p, _ = batched.truth_at(spec, [ctx])
    here = float(batched.kl(p, batched.model_logprobs(model, spec, [ctx]))[0])
    for rule in _served(model, spec, body, here_rule):
        claim = Claim(f"effect:{rule}", RuleHolds(rule=rule, max_kl=bound(rule)))
        r = check_claim(model, spec, claim, examples=max(20, examples // 4), seed_=seed_)
        if not r.passed:
            return Effect(here_rule, here, bound(here_rule), r.counterexample, r.value)
    return Effect(here_rule, here, bound(here_rule))


def _served(model, spec: Spec, body: HeadRole, here: str) -> list[str]:
    """The rules a head's role serves: the claim's rule; else those the model's records
    name for the head; else, for a previous-token head, every trigram and induction
    rule (they read ``prev``); and the rule firing at the counterexample."""
    if body.rule:
        return [body.rule]
    layer, head = head_of(body.head)
    named = [r for rec in component_records(model) if (rec.layer, rec.head) == (layer, head)
             for r in rec.rules]  # fmt: skip
    if not named and body.role == "previous-token":
        named = [r.name for r in spec.rules if kinds.of(r).reads_prev]
    return list(dict.fromkeys([*named, here]))


def _vacuous(c: Claim, threshold: float) -> Result:
    """No context satisfies the claim's conditions (e.g. its rule never fires): it holds
    vacuously, said in a warning; the value is NaN (nothing was measured)."""
    why = f"{c.name}: no context where the claim applies was found, so nothing was checked"
    measure, fails_if = _measure(c)
    return Result(
        c.name, c.kind, True, None, math.nan, _shown(c, threshold), 0, (*_loosened(c), why),
        None, measure, fails_if, 0, Coverage(0, (0, 0), (), ()), loosened=c.loosened,
    )  # fmt: skip


def _region(model: Transformer, spec: Spec):
    compiler = model.meta.get("compiler") or {}
    if not compiler.get("family") or not model.meta.get("conditions"):
        return lambda ctx: True
    an = analyse(spec)
    conds = stated(an, model.meta)
    return lambda ctx: all_hold(conds, an, list(ctx))


def _breaks(model, spec, c: Claim, body: Ablation, examples, seed_, base: Result, patch):
    """The ablation's other half: each broken rule's mean excess loss rises enough
    under ``patch`` (the claim's zero or mean ablation). ``base`` is the passed search
    of the spared rules; the result reports the smallest mean rise."""
    worst = (math.inf, None)
    rng = np.random.default_rng(seed_)
    n_seen = 0
    for rule in body.breaks:
        rule_id = spec.rule_names().index(rule)
        built = contexts_for_rule(spec, rule_id, rng, max(8, examples // 4))
        ctxs = [list(x) for x in built]
        p, _ = batched.truth_at(spec, ctxs)
        before = batched.kl(p, batched.model_logprobs(model, spec, ctxs))
        after = batched.kl(p, batched.model_logprobs(model, spec, ctxs, patch, per_row=False))
        rise = np.where(np.isfinite(after - before), after - before, np.nan)
        n_seen += len({tuple(x) for x in ctxs})
        if np.isnan(rise).any():  # a diverged model: no rise can be measured, it fails
            worst = (math.nan, ctxs[int(np.isnan(rise).argmax())])
            break
        if rise.mean() < worst[0]:
            worst = (float(rise.mean()), ctxs[int(rise.argmin())])
    passed = worst[0] >= body.min_increase  # False for NaN
    measure, fails_if = MEASURES["ablation/breaks"]
    spared = f"{c.name}: spared rules: {base.comparison()}"
    return replace(
        base,
        passed=passed,
        counterexample=None if passed else spec.vocab.decode(worst[1]),
        value=worst[0],
        threshold=body.min_increase,
        examples=base.examples + n_seen,
        measure=measure,
        fails_if=fails_if,
        detail=spared,
    )


def _shown(c: Claim, v: float) -> float:
    """Head roles are searched as 1 - score; report the score itself."""
    return 1.0 - v if isinstance(c.body, HeadRole) else v


def _trivial(c: Claim, probe: _Probe, spec: Spec) -> tuple[str, ...]:
    """Warn when every generated context had the same answer although the rule's answer
    varies with the context (a rule with one possible answer is constant by definition:
    ``start``, a trigram or skip-bigram, a bigram whose rows are all the same)."""
    if isinstance(c.body, RuleHolds) and len(probe.answers) == 1 and not _fixed(spec, c.body.rule):
        return (
            f"{c.name}: the expected answer was the same on every generated context, so a "
            "model that always says it would pass; add contexts where the answer varies",
        )
    return ()


def _fixed(spec: Spec, name: str) -> bool:
    """Whether rule ``name`` has one possible next-token distribution."""
    if name == "start":
        return True
    rule = next(r for r in spec.rules if r.name == name)
    return kinds.of(rule).fixed(rule)


def _statistical(model, spec, c: Claim, examples: int, seed_: int, where) -> Result:
    """Holds on >= fraction p of sampled in-distribution contexts: the value is the
    one-sided 95% Wilson lower bound of the fraction holding (``z = WILSON_Z``), which
    must reach p; the warning gives the count."""
    probe = _probe(model, spec, c, where, seed_)
    rng = np.random.default_rng(seed_)
    ctxs = sampled_contexts(spec, getattr(c.body, "rule", None), rng, examples, spec.max_len, 64)
    measure, fails_if = MEASURES["statistical"]
    if not ctxs or not isinstance(c.body, RuleHolds | ModelsAgree | Ablation | HeadRole):
        return Result(
            c.name, c.kind, False, None, 0.0, c.fraction, 0,
            (*_loosened(c), f"{c.name}: no contexts sampled"), None, measure, fails_if,
            loosened=c.loosened,
        )  # fmt: skip
    values = np.asarray(probe.values(ctxs))
    ok = values <= probe.threshold
    k, n = int(ok.sum()), len(ok)
    lower = wilson_lower(k, n)
    fails = [ctxs[i] for i in np.flatnonzero(~ok)]
    shortest = min(fails, key=len) if fails else None
    said = f"{c.name}: {k}/{n} sampled contexts hold; one-sided 95% Wilson lower bound {lower:.3f}"
    distinct = {tuple(x) for x in ctxs}
    return Result(
        c.name, c.kind, lower >= c.fraction, spec.vocab.decode(shortest) if shortest else None,
        lower, c.fraction, len(distinct), (*_loosened(c), said), None, measure, fails_if, n,
        coverage(spec, distinct), loosened=c.loosened,
    )  # fmt: skip


def wilson_lower(k: int, n: int, z: float = WILSON_Z) -> float:
    """The Wilson score lower bound of a binomial proportion ``k / n``: with the default
    ``z`` (1.645), a one-sided 95% lower confidence bound."""
    p = k / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - spread) / (1 + z * z / n)


def check_all(
    model: Transformer,
    spec: Spec,
    claims,
    *,
    examples: int = 200,
    seed_: int = 0,
    database: str | Path | None = None,
    sweep: int | None = None,
) -> list[Result]:
    """Check every claim; the replay database (if any) re-checks last failures first.

    Raises:
        CraftError: a model that does not fit the spec, or a claim that does not fit
            the spec or the model (before any search).
    """
    check_model(model, spec, where="check")
    validate(claims, spec, model)
    sha = model_digest(model) if database else None
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # batches of at most 64 short rows: threads only contend
    try:
        return [
            check_claim(
                model, spec, c, examples=examples, seed_=seed_, database=database, sweep=sweep,
                model_sha=sha,
            )
            for c in claims
        ]  # fmt: skip
    finally:
        torch.set_num_threads(threads)
