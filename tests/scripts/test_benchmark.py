"""scripts/benchmark.py: its pure-python parts and the physnet-only paths on tiny sizes.

The peers' venv is not needed (the peer side is exercised by running the script itself).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "benchmark.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("physnet_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["physnet_benchmark"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> None:
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_loglog_slope(bench: ModuleType) -> None:
    n = np.array([1e2, 1e3, 1e4, 1e5])
    assert bench.loglog_slope(n, 3e-6 * n) == pytest.approx(1.0)
    assert bench.loglog_slope(n, 2e-9 * n**2) == pytest.approx(2.0)
    # points below 10^3 atoms are left out of the fit
    assert bench.loglog_slope(n, [50.0, 1e-3, 1e-2, 1e-1]) == pytest.approx(1.0)
    assert bench.loglog_slope([1e2, 1e3], [1.0, 2.0]) is None


def test_markdown_table_and_ratio(bench: ModuleType) -> None:
    table = bench.markdown_table(["a", "b", "c"], [["x", 1234.5, None], ["y", 0.012345, float("nan")]])
    assert table.splitlines() == [
        "| a | b | c |",
        "|---|---|---|",
        "| x | 1234 | n/a |",
        "| y | 0.0123 | n/a |",
    ]
    assert bench.ratio(6.0, 3.0) == 2.0
    assert bench.ratio(None, 3.0) is None and bench.ratio(1.0, 0.0) is None


@pytest.mark.parametrize("n", [108, 500, 4000, 5000, 97556])
def test_fcc_boxes_have_about_the_requested_atoms(bench: ModuleType, n: int) -> None:
    a, b, c = bench.fcc_repeats(n)
    assert abs(4 * a * b * c - n) / n < 0.05
    atoms = bench.cu_box(108)
    assert len(atoms) == 108 and atoms.pbc.all()


def test_matched_models_have_the_peer_sizes(bench: ModuleType) -> None:
    bp = bench.physnet_model("behler_parrinello")
    assert bp.descriptor.n_features == 384  # 4 x 16 radial + 10 x 32 angular, torchani's AEV length
    # torchani simple_ani(["H", "C", "O", "Cu"], ...) with bias has 559,652 parameters
    assert sum(p.numel() for p in bp.parameters()) == 559652
    schnet = bench.physnet_model("schnet")
    # schnetpack's SchNet of the same size has 226,945: its embedding has 100 rows, not 4
    assert sum(p.numel() for p in schnet.parameters()) == 226945 - 96 * 128


def test_physnet_side_md_and_calls_on_ethanol(bench: ModuleType) -> None:
    systems = bench.structures(quick=True)
    side = bench.PhysnetSide("cpu")
    info = side.setup("k", "schnet", systems["ethanol (9)"])
    assert info["n_params"] > 0 and np.isfinite(info["energy"])
    assert side.md("k", 5) > 0
    assert side.call("k", 2) > 0
    ta, tb = bench.interleave(lambda: 1.0, lambda: 2.0, 3)
    assert ta == [1.0] * 3 and tb == [2.0] * 3


def test_scaling_worker_and_plot(bench: ModuleType, tmp_path: Path) -> None:
    res = bench.scaling_worker("schnet", 32, "cpu", 1)
    assert res["n_atoms"] == 32 and res["n_edges"] > 0 and res["seconds"] > 0 and res["peak_mb"] >= 0
    pts = [dict(res, n_atoms=n, seconds=res["seconds"] * n / 32) for n in (32, 320)]
    path = tmp_path / "scaling.png"
    bench.plot_scaling({"schnet": pts}, path, "cpu")
    assert path.stat().st_size > 1000


def test_energy_models_lists_the_atomistic_ones(bench: ModuleType) -> None:
    names = bench.energy_models()
    assert {"schnet", "behler_parrinello", "egnn"} <= set(names)
    assert "cgnet" not in names  # per-graph CG model: not part of the atomistic benchmark
