"""How much the console says: ``voxnas run/demo --verbose`` sets ``VOXNAS_VERBOSE=1``, which
Ray workers inherit; every layer that prints or silences a library asks :func:`verbose`."""

from __future__ import annotations

import os

__all__ = ["verbose"]


def verbose() -> bool:
    """True with ``--verbose``: every epoch's line, per-case DSC, Tune's trial tables and the
    libraries' own INFO logs; otherwise a few lines per trial."""
    return os.environ.get("VOXNAS_VERBOSE", "") not in ("", "0")
