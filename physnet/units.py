"""Energy and length units by name, as factors to ASE's eV and Å.

A data set and a model say their units; the ASE calculator converts with these.
Nothing in physnet guesses a unit.

>>> round(energy_factor("kcal/mol"), 6)
0.043364
"""

from __future__ import annotations

from ase import units as _u

ENERGY_UNITS: dict[str, float] = {
    "eV": 1.0,
    "meV": 1e-3,
    "kcal/mol": _u.kcal / _u.mol,
    "kJ/mol": _u.kJ / _u.mol,
    "Hartree": _u.Hartree,
    "Ha": _u.Hartree,
    "Ry": _u.Rydberg,
}
LENGTH_UNITS: dict[str, float] = {
    "Å": 1.0,
    "Angstrom": 1.0,
    "A": 1.0,
    "Bohr": _u.Bohr,
    "nm": 10.0,
    "pm": 0.01,
}


def energy_factor(unit: str) -> float:
    """eV per ``unit``; ``ValueError`` for an unknown name."""
    if unit not in ENERGY_UNITS:
        raise ValueError(f"unknown energy unit {unit!r}; use one of {sorted(ENERGY_UNITS)}")
    return ENERGY_UNITS[unit]


def length_factor(unit: str) -> float:
    """Å per ``unit``; ``ValueError`` for an unknown name."""
    if unit not in LENGTH_UNITS:
        raise ValueError(f"unknown length unit {unit!r}; use one of {sorted(LENGTH_UNITS)}")
    return LENGTH_UNITS[unit]
