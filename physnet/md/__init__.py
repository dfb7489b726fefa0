"""Running dynamics with physnet models (ASE calculator)."""

from physnet.md.ase_calculator import Calculator

__all__ = ["Calculator"]
