"""The one exception class of the project.

Every error a user can cause (a malformed spec, a bad argument, an unreadable model
file) is a :class:`CraftError` whose message names the offending object (file, YAML
path, rule, head) and says how to fix it. The CLI prints ``str(error)`` as one line and
exits with code 2. ``specs`` is the bottom package, so the class lives here and
``craft`` re-exports it.
"""

from __future__ import annotations


class CraftError(Exception):
    """A user-facing error: one line, naming the object and the fix."""

    def __init__(self, message: str, *, where: str | None = None, fix: str | None = None):
        self.where = where
        self.fix = fix
        parts = [f"{where}: {message}" if where else message]
        if fix:
            parts.append(f"fix: {fix}")
        super().__init__("; ".join(parts))


class CraftWarning(UserWarning):
    """A spec that loads but is probably not what its author meant (e.g. a shadowed rule)."""
