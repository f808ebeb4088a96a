"""Properties of a rule list as a whole: coverage (an error) and shadowing (a warning).

Both read each rule through its kind's hooks (:mod:`specs.kinds`): ``unconditional``
(the tokens ``x[t]`` on which the rule fires whatever came before: bigram keys, none
for every other kind), ``cues`` (the tokens ``x[t]`` on which it can fire at all) and
``covers`` (a same-kind rule that matches every context it matches).

Coverage. Only bigram rules fire on ``x[t]`` alone; every other kind needs a token
before the current one (trigram, skip-bigram, induction, copy) or an open bracket,
which the current token cannot be when it is a cue (bracket), so at the first position
after BOS (context ``[<bos>, v]``) only bigram rules can fire. Conversely, a bigram
rule fires on ``x[t]`` alone, whatever came before. Hence every context is covered if
and only if every token is a key of some bigram rule.

Shadowing. Rule ``j`` never fires when every context it matches is matched by an
earlier rule ``i``. The checks below are sufficient conditions (not all of them):

* bigram ``j``: its keys are all keys of earlier bigram rules;
* any other rule ``j`` whose *last-token* set (trigram ``second``, skip-bigram ``cue``,
  induction ``on``, bracket and copy ``cue``) lies inside the keys of earlier bigram
  rules: the bigram fires first;
* trigram ``j`` vs an earlier trigram: ``first_j <= first_i`` and ``second_j <= second_i``;
* skip-bigram: ``anchor_j <= anchor_i``, ``cue_j <= cue_i`` and window ``j`` inside
  window ``i``;
* induction: ``on_j <= on_i``;
* bracket: the same pairs and ``cue_j <= cue_i`` (the same stack, a cue of both);
* copy: the same offset and ``cue_j <= cue_i``.
"""

from __future__ import annotations

from collections.abc import Iterator

from specs.errors import CraftError
from specs.kinds import Rule, kind_of
from specs.model import BOS, Vocab
from specs.yamlpath import ROOT, where


def check_coverage(vocab: Vocab, rules: tuple[Rule, ...], source: str) -> None:
    """Raise unless every context has a rule, i.e. every token is some bigram's key.

    Raises:
        CraftError: naming the first uncovered context ``[<bos>, token]``.
    """
    covered = frozenset().union(*(kind_of(r).unconditional(r) for r in rules))
    for token_id, token in enumerate(vocab.tokens):
        if token_id not in covered:
            raise CraftError(
                f"no rule covers the context [{BOS}, {token}]",
                where=where(source, ROOT / "rules"),
                fix='add a fallback bigram with a "*" key as the last rule',
            )


def _covers(earlier: Rule, rule: Rule) -> bool:
    """Whether ``earlier`` (same kind) matches every context ``rule`` matches."""
    kind = kind_of(rule)
    return kind_of(earlier) is kind and kind.covers(earlier, rule)


def _label(index: int, rule: Rule) -> str:
    return f"rules[{index}] ({rule.name})"


def shadowed_rules(rules: tuple[Rule, ...], source: str) -> Iterator[str]:
    """Messages for rules that an earlier rule (or earlier bigrams) shadow entirely."""
    for j, rule in enumerate(rules):
        keys = {i: kind_of(r).unconditional(r) for i, r in enumerate(rules[:j])}
        bigrams = [(i, r) for i, r in enumerate(rules[:j]) if keys[i]]
        bigram_keys = frozenset().union(*keys.values())
        last = kind_of(rule).cues(rule)
        if last <= bigram_keys and bigrams:
            culprits = [(i, r) for i, r in bigrams if keys[i] & last]
            names = ", ".join(_label(i, r) for i, r in culprits)
            why = (
                f"every key is already a key of the earlier bigram rule(s) {names}"
                if kind_of(rule).unconditional(rule)
                else f"every token it can fire on is a key of the earlier bigram rule(s) "
                f"{names}, which fire first"
            )
            yield _message(source, j, rule, why, culprits[0])
            continue
        for i, earlier in enumerate(rules[:j]):
            if _covers(earlier, rule):
                why = f"the earlier rule {_label(i, earlier)} matches every context it matches"
                yield _message(source, j, rule, why, (i, earlier))
                break


def _message(source: str, j: int, rule: Rule, why: str, first: tuple[int, Rule]) -> str:
    return (
        f"{where(source, ROOT / 'rules' / j)}: rule {rule.name!r} never fires: {why}; "
        f"fix: remove it, or move it before {_label(*first)}"
    )
