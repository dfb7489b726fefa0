"""physnet: machine-learned physics on graphs.

Energy models (``physnet.models``) map graphs (``physnet.data``) to per-atom
energies; :class:`Potential` adds priors and references and takes forces and
stress by autograd; :class:`Calculator` runs them in ASE.
"""

from physnet import data, models, nn, units
from physnet.md.ase_calculator import Calculator
from physnet.potential import Potential

__version__ = "0.1.0"
__all__ = ["data", "models", "nn", "units", "Potential", "Calculator", "__version__"]
