"""YAML paths such as ``rules[3].bigram.alice``: where in a spec file a problem is.

Error messages name the offending object by its path in the file, so users can find it
without counting. A path is a tuple of keys (str) and list indices (int), never a
string that is parsed back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*\Z")


@dataclass(frozen=True)
class YamlPath:
    """A location in a YAML document: mapping keys and list indices from the root.

    ``str(YamlPath(("rules", 3, "bigram", "alice")))`` is ``rules[3].bigram.alice``;
    keys that are not plain identifiers are quoted: ``rules[0].bigram["*"]``.
    """

    parts: tuple[str | int, ...] = ()

    def __truediv__(self, part: str | int) -> YamlPath:
        return YamlPath((*self.parts, part))

    @property
    def parent(self) -> YamlPath:
        return YamlPath(self.parts[:-1])

    def __str__(self) -> str:
        out = ""
        for part in self.parts:
            if isinstance(part, int):
                out += f"[{part}]"
            elif _PLAIN.match(part):
                out += f".{part}" if out else part
            else:
                escaped = part.replace("\\", "\\\\").replace('"', '\\"')
                out += f'["{escaped}"]'
        return out or "<top level>"


ROOT = YamlPath()


def where(source: str, path: YamlPath | None = None) -> str:
    """The ``where`` of a :class:`~specs.errors.CraftError`: ``file: yaml.path``."""
    return source if path is None or not path.parts else f"{source}: {path}"
