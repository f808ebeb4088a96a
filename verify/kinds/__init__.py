"""The verifier's rule kinds: one module each (:class:`~verify.kinds.base.VerifyKind`).

Adding a rule kind to ``verify``: write ``verify/kinds/<key>.py`` defining ``KIND`` (the
hooks are listed in :mod:`verify.kinds.base`) and add it to :data:`KINDS`. A rule whose
kind has no module here is refused with one line naming it.
"""

from __future__ import annotations

from specs.errors import CraftError
from specs.kinds import kind_of
from verify.kinds import bigram, bracket, copy, induction, skip_bigram, trigram
from verify.kinds.base import Tail, VerifyKind

KINDS: dict[str, VerifyKind] = {
    k.key: k
    for k in (bigram.KIND, trigram.KIND, skip_bigram.KIND, induction.KIND, bracket.KIND, copy.KIND)
}


def of(rule: object) -> VerifyKind:
    """The verifier's hooks for a resolved rule.

    Raises:
        CraftError: a rule kind the verifier does not know yet.
    """
    key = kind_of(rule).key
    if key not in KINDS:
        raise CraftError(
            f"the verifier has no support for {key} rules yet (rule {rule.name!r})",
            fix=f"check a spec without {key} rules, or add verify/kinds/{key}.py",
        )
    return KINDS[key]


def with_role(role: str) -> tuple[str, ...]:
    """YAML keys of the kinds a ``head_role`` claim of ``role`` must name a rule of."""
    return tuple(k.key for k in KINDS.values() if role in k.head_roles)


__all__ = ["KINDS", "Tail", "VerifyKind", "of", "with_role"]
