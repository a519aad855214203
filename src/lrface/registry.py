"""One registry helper for encoders, students and losses (ground floor: imports nothing from
lrface). A registry only records what registers into it; it never imports its entries, so a
module that registers (``@ENCODERS.register("dlib")``) can import its registry without a
circle. Whoever needs every built-in entry imports the modules that define them (the factory
modules: ``lrface.models.factory``, ``lrface.losses.methods``), as timm's ``_registry`` /
``_factory`` split does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one ``kind`` (``"encoder"``, ``"student"``, ``"loss"``)."""

    def __init__(self, kind: str):
        self.kind = kind
        self.entries: dict[str, T] = {}
        """Name -> entry (tests may add one for a while with ``monkeypatch.setitem``)."""

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: record the decorated factory or class under ``name`` (once)."""

        def wrap(entry: T) -> T:
            if name in self.entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self.entries[name] = entry
            return entry

        return wrap

    def get(self, name: str) -> T:
        """The entry of ``name``; KeyError naming the registered ones."""
        if name not in self.entries:
            raise KeyError(f"unknown {self.kind} {name!r}; registered: {self.names()}")
        return self.entries[name]

    def names(self) -> list[str]:
        return sorted(self.entries)

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.entries)
