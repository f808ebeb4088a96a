"""The spec language: loading with precise errors, the exact ground truth, sampling.

This is the bottom package: it imports nothing from ``craft`` or ``verify``. See
``specs/README.md`` for the language reference.

Example:
    >>> import specs
    >>> spec = specs.load_spec(specs.library_path("toy_language"))
    >>> dist, rule_id = specs.next_dist_exact(spec, specs.encode(spec, ["the", "alice"]))
    >>> spec.rule_names()[rule_id], dist.probs[spec.vocab.index("runs")]
    ('the-alice', Fraction(1, 1))
"""

from specs.canonical import canonical_json, spec_to_data
from specs.errors import CraftError, CraftWarning
from specs.load import LIBRARY, library_path, load_library, load_spec, parse_spec
from specs.model import (
    BOS,
    MAX_LEN_LIMIT,
    SPEC_FORMAT,
    START_RULE,
    Bigram,
    Bracket,
    Copy,
    Dist,
    Induction,
    Rule,
    SkipBigram,
    Spec,
    Trigram,
    Vocab,
)
from specs.sample import sample
from specs.targeted import contexts_for_rule
from specs.truth import encode, next_dist, next_dist_exact, rule_index, truth

__all__ = [
    "BOS",
    "LIBRARY",
    "MAX_LEN_LIMIT",
    "SPEC_FORMAT",
    "START_RULE",
    "Bigram",
    "Bracket",
    "Copy",
    "CraftError",
    "CraftWarning",
    "Dist",
    "Induction",
    "Rule",
    "SkipBigram",
    "Spec",
    "Trigram",
    "Vocab",
    "canonical_json",
    "contexts_for_rule",
    "encode",
    "library_path",
    "load_library",
    "load_spec",
    "next_dist",
    "next_dist_exact",
    "parse_spec",
    "rule_index",
    "sample",
    "spec_to_data",
    "truth",
]
