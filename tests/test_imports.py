"""Start-up: heavy dependencies load when first used, not on ``import physnet`` or ``physnet --help``.

Each check runs in a fresh interpreter and reads ``sys.modules``, so it fails as soon as a
module-level import pulls a heavy package in again.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("e3nn", "pytorch_lightning", "lightning", "matplotlib", "rdkit", "scipy")


def _loaded_after(code: str) -> set[str]:
    """Top-level packages in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    probe = code + "\nimport json, sys\nprint(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stdout.strip().splitlines()[-1]))


def test_import_physnet_loads_no_heavy_package() -> None:
    loaded = _loaded_after("import physnet")
    assert "physnet" in loaded
    assert not loaded & {*HEAVY, "torch", "ase"}, sorted(loaded & {*HEAVY, "torch", "ase"})


def test_cli_parser_loads_no_torch() -> None:
    """``physnet --help`` builds every subcommand's parser; none may import torch or a heavy package."""
    loaded = _loaded_after("import physnet.cli\nphysnet.cli.build_parser().format_help()")
    assert not loaded & {*HEAVY, "torch", "numpy"}, sorted(loaded & {*HEAVY, "torch", "numpy"})


def test_schnet_in_ase_does_not_load_e3nn_or_lightning() -> None:
    """A SchNet user (build, Potential, graph from ASE, Calculator) pays for none of the others."""
    code = (
        "import ase, torch, physnet\n"
        "m = physnet.models.build('schnet', species=['H', 'O'], n_interactions=1)\n"
        "atoms = ase.Atoms('H2O', positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])\n"
        "atoms.calc = physnet.Calculator(physnet.Potential(m), dtype=torch.float64)\n"
        "atoms.get_forces()\n"
        "physnet.data.from_ase(atoms, cutoff=5.0)"
    )
    loaded = _loaded_after(code)
    assert "torch" in loaded and loaded & {"vesin", "vesin_torch"}  # the probe did run
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_registries_know_every_model_module() -> None:
    """Every module that registers a model is in its registry's lazy table, and vice versa, so that
    ``available()`` is complete before any model module is imported."""
    import physnet.models
    from physnet.models import registry

    for info in pkgutil.iter_modules(physnet.models.__path__):
        importlib.import_module(f"physnet.models.{info.name}")
    kinds = {table.kind for table in registry.REGISTRIES}
    assert kinds == {"model", "simulator", "dynamics model"}, kinds
    for table in registry.REGISTRIES:
        assert set(table.builders) == set(table.builtin), table.kind
        for name, module in table.builtin.items():
            assert table.builders[name].__module__ == module, (table.kind, name)


@pytest.mark.parametrize("package", ["physnet", "physnet.data", "physnet.models"])
def test_every_public_name_resolves(package: str) -> None:
    module = importlib.import_module(package)
    for name in module.__all__:
        assert getattr(module, name) is not None, f"{package}.{name}"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        module.nope  # noqa: B018


def test_register_refuses_a_builtin_name_before_its_module_is_imported() -> None:
    """Registering ``se3_transformer`` from elsewhere is refused even while e3nn is not loaded."""
    code = (
        "import physnet.models as m\n"
        "try:\n"
        "    m.register('se3_transformer')(lambda species: None)\n"
        "except ValueError as err:\n"
        "    print('refused:', err)\n"
    )
    probe = code + "import sys\nprint('e3nn' in sys.modules)"
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "refused: a model named 'se3_transformer' is already registered"
    assert lines[1] == "False"
