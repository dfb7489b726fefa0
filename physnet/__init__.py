"""physnet: machine-learned physics on graphs.

Energy models (``physnet.models``) map graphs (``physnet.data``) to per-atom
energies; :class:`Potential` adds priors and references and takes forces and
stress by autograd; :class:`Committee` averages several and measures their spread;
:class:`Calculator` runs them in ASE.

The names below load on first use (PEP 562), so ``import physnet`` and ``physnet --help``
do not pay for torch, ASE, e3nn or Lightning until a model, graph or calculator is asked for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> (module, attribute); attribute None: the module itself
_LAZY: dict[str, tuple[str, str | None]] = {
    "data": ("physnet.data", None),
    "models": ("physnet.models", None),
    "nn": ("physnet.nn", None),
    "md": ("physnet.md", None),
    "units": ("physnet.units", None),
    "Potential": ("physnet.potential", "Potential"),
    "Calculator": ("physnet.md.ase_calculator", "Calculator"),
    "Committee": ("physnet.committee", "Committee"),
}

__all__ = ["data", "models", "nn", "units", "Potential", "Committee", "Calculator", "__version__"]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from physnet import data, models, nn, units
    from physnet.committee import Committee
    from physnet.md.ase_calculator import Calculator
    from physnet.potential import Potential


def __getattr__(name: str) -> Any:
    """Import a public name's module the first time the name is used."""
    if name not in _LAZY:
        raise AttributeError(f"module 'physnet' has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
