"""The built-in model names of each registry and the module whose import registers each.

Plain data with no imports, so that ``physnet train --help`` can list the names without loading
torch; :class:`physnet.models.registry.Registry` imports a module on the first look-up of one of
its names. A new built-in model module adds its name here (``tests/test_imports.py`` checks).
"""

from __future__ import annotations

ENERGY_MODELS: dict[str, str] = {
    "behler_parrinello": "physnet.models.behler_parrinello",
    "cgnet": "physnet.models.cgnet",
    "egnn": "physnet.models.egnn",
    "painn": "physnet.models.painn",
    "schnet": "physnet.models.schnet",
    "se3_transformer": "physnet.models.se3_transformer",
}
SIMULATORS: dict[str, str] = {"gns": "physnet.models.gns"}
DYNAMICS_MODELS: dict[str, str] = {
    "egnn": "physnet.models.egnn",
    "se3_transformer": "physnet.models.se3_transformer",
}
