"""Whether a model is being traced for export (:mod:`physnet.export`).

While :func:`exporting` is active, models take their static-shape paths: no host
syncs (``.item()`` on data, ``bool(tensor)``), no Python branches on data or on the
number of atoms or edges, and no input checks (the exported file's caller checks its
inputs once, where they enter). Outside it the eager paths are unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["exporting", "is_exporting"]

_EXPORTING = False


def is_exporting() -> bool:
    """True inside :func:`exporting` (a model is being traced for :mod:`physnet.export`)."""
    return _EXPORTING


@contextlib.contextmanager
def exporting() -> Iterator[None]:
    """Context in which models are traced for export (see the module docstring)."""
    global _EXPORTING
    previous, _EXPORTING = _EXPORTING, True
    try:
        yield
    finally:
        _EXPORTING = previous
