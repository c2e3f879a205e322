"""A fast path that is on unless a ``with`` block turns it off (per thread / task)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

__all__ = ["Switch"]


class Switch:
    """On by default; :meth:`off` turns it off inside a ``with`` block."""

    def __init__(self, name: str) -> None:
        self._var = ContextVar(name, default=True)

    def on(self) -> bool:
        return self._var.get()

    @contextlib.contextmanager
    def off(self) -> Iterator[None]:
        token = self._var.set(False)
        try:
            yield
        finally:
            self._var.reset(token)
