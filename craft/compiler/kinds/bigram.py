"""Bigram rules ``x[t] -> row``: the direct path ``W_E W_U`` holds them, no component.

The first bigram covering a token gives its row (:func:`craft.compiler.analysis.analyse`);
every other rule kind can only fire where that bigram comes later.
"""

from __future__ import annotations

from craft.compiler.kinds.base import RuleKind
from specs.model import Bigram, Dist


class BigramKind(RuleKind):
    name = "bigram"
    rule = Bigram

    def direct(self, rule: Bigram) -> tuple[tuple[int, Dist], ...]:
        return rule.table


BIGRAM = BigramKind()
