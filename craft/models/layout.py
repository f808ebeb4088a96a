"""Named residual-stream layouts: which basis direction each residual dimension holds.

A crafted model knows what every residual coordinate means (``tok:alice``,
``pos:3``, ``prev:bob``, ``fire:beach-big``). A :class:`Direction` is a frozen
``(name, value)`` pair; a :class:`Layout` is an ordered tuple of distinct directions.
Direct sums are strict (overlap is an error); joins are permissive.

Reserved directions are declared once here: :data:`BOS_DIR` (1 at the BOS position
only) and :data:`ONE` (1 at every non-BOS position).
"""

from __future__ import annotations

import reprlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from specs.errors import CraftError


@dataclass(frozen=True, order=True)
class Direction:
    """One named residual basis direction, e.g. ``Direction("tok", "alice")``."""

    name: str
    value: str | int | None = None

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value}"

    def to_json(self) -> list:
        return [self.name, self.value]

    @staticmethod
    def from_json(obj: Any) -> Direction:
        """Read ``[name, value]``: a string name and a JSON scalar (or null) value.

        Raises:
            CraftError: not a two-item list, a name that is not a string, or a value
                that is a list or an object (a direction must be hashable).
        """
        ok = isinstance(obj, list) and len(obj) == 2 and isinstance(obj[0], str)
        if not ok or not (obj[1] is None or isinstance(obj[1], str | int | float)):
            raise CraftError(
                f"direction {reprlib.repr(obj)} is not a [name, value] pair",
                fix='write a direction as ["name", value] with a string name and a string,'
                " number or null value",
            )
        return Direction(obj[0], obj[1])


BOS_DIR = Direction("bos")
ONE = Direction("one")


@dataclass(frozen=True)
class Layout:
    """An ordered set of directions; ``index(d)`` is d's residual coordinate."""

    directions: tuple[Direction, ...]
    _index: dict[Direction, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index = {d: i for i, d in enumerate(self.directions)}
        if len(index) != len(self.directions):
            seen: set[Direction] = set()
            dup = next(d for d in self.directions if d in seen or seen.add(d))
            raise CraftError(f"direction {dup} appears twice in a residual layout")
        object.__setattr__(self, "_index", index)

    def __len__(self) -> int:
        return len(self.directions)

    def __contains__(self, d: Direction) -> bool:
        return d in self._index

    def __iter__(self):
        return iter(self.directions)

    def index(self, d: Direction) -> int:
        try:
            return self._index[d]
        except KeyError:
            raise CraftError(f"direction {d} is not in this residual layout") from None

    def indices(self, ds: Iterable[Direction]) -> list[int]:
        return [self.index(d) for d in ds]

    def named(self, name: str) -> tuple[Direction, ...]:
        """All directions with this name, in layout order."""
        return tuple(d for d in self.directions if d.name == name)

    def direct_sum(self, other: Layout) -> Layout:
        overlap = set(self.directions) & set(other.directions)
        if overlap:
            raise CraftError(f"direct sum of overlapping layouts: {sorted(map(str, overlap))}")
        return Layout(self.directions + other.directions)

    def join(self, other: Layout) -> Layout:
        return Layout(self.directions + tuple(d for d in other if d not in self._index))

    def to_json(self) -> list:
        return [d.to_json() for d in self.directions]

    @staticmethod
    def from_json(obj: Any, where: str = "layout") -> Layout:
        """Read :meth:`to_json`'s list of ``[name, value]`` pairs.

        Args:
            obj: the JSON list.
            where: names the layout in errors (e.g. ``"m.safetensors: header layout"``).

        Raises:
            CraftError: not a list, a malformed direction (named by its index), or a
                direction listed twice.
        """
        if not isinstance(obj, list):
            raise CraftError(
                f"is a {type(obj).__name__}, not a list of [name, value] pairs", where=where
            )
        directions = []
        for i, item in enumerate(obj):
            try:
                directions.append(Direction.from_json(item))
            except CraftError as e:
                raise CraftError(str(e), where=f"{where}[{i}]") from None
        try:
            return Layout(tuple(directions))
        except CraftError as e:
            raise CraftError(str(e), where=where) from None

    def describe(self) -> list[tuple[str, int]]:
        """Subspace sizes by name, in layout order: ``[("tok", 50), ("pos", 129), ...]``."""
        out: list[tuple[str, int]] = []
        for d in self.directions:
            if out and out[-1][0] == d.name:
                out[-1] = (d.name, out[-1][1] + 1)
            else:
                out.append((d.name, 1))
        return out
