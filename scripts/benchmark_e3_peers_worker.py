"""Peer side of ``scripts/benchmark.py`` for MACE, NequIP and TensorNet, as JSON lines.

Runs inside one peer's own virtual environment (``~/.cache/physnet-peers-mace`` with
mace-torch, ``~/.cache/physnet-peers-nequip`` with nequip, or
``~/.cache/physnet-peers-torchmdnet`` with torchmd-net; ``scripts/benchmark.py --setup-peers``
makes them) and imports nothing from physnet. The peer is named by the first argument
(``mace``, ``nequip`` or ``tensornet``). It reads one JSON request per line on stdin and
answers one JSON line on stdout, so the parent can alternate it with physnet (A B A B ...).

Requests (``op``):

- ``info``: versions of python, torch, e3nn (None for torchmd-net, which has none), ase and the
  peer.
- ``setup``: ``{"key", "structure", "params"}`` builds a model with random weights of the
  configuration in ``params`` (MACE: ``mace.modules.ScaleShiftMACE`` as ``mace_run_train``
  builds it; NequIP: ``nequip.model.NequIPGNNModel``), saves it where the peer's ASE
  calculator loads it from (MACE: ``torch.save`` of the module, read by
  ``MACECalculator(model_paths=...)``; NequIP: the built ``GraphModel`` is handed to
  ``NequIPCalculator`` with the transforms its ``_from_saved_model`` would add; TensorNet:
  ``torchmdnet.models.model.create_model`` with ``torchmd-train``'s defaults under ``params``,
  saved as a checkpoint (``hyper_parameters`` + ``state_dict``) that torchmd-net's
  ``TMDNETCalculator`` loads) and returns the parameter count and the energy.
- ``md``: ``{"key", "steps"}`` runs ``steps`` velocity-Verlet steps (0.5 fs) through the
  calculator from the structure's initial state; returns ``seconds``.
- ``call``: ``{"key", "n"}`` times ``n`` energy+forces calls of the calculator on a fresh
  copy of the Atoms (neighbour list included, nothing reused); returns ``seconds`` (median)
  and ``peak_mb``, the largest rise of the peak resident set (VmHWM; before each call freed heap
  is returned with ``malloc_trim(0)`` and VmHWM is reset through ``/proc/self/clear_refs``)
  above the resident set before the call.
- ``evaluate``: ``{"snapshots": [path, ...], "test": extxyz, "template": path}`` loads each
  saved checkpoint of a training run and returns test energy / force MAE and RMSE (units of
  the file) and, for NequIP's and torchmd-net's Lightning checkpoints, the optimiser steps done.
- ``quit``.

Run by the parent, not by hand.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from typing import Any

import numpy as np
import torch
from peer_worker_loop import atoms_from_request as _atoms
from peer_worker_loop import serve, timed_md

PEER = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("BENCH_PEER", "mace")
torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))

STATE: dict[str, dict[str, Any]] = {}
TMP = tempfile.mkdtemp(prefix=f"physnet-peers-{PEER}-")
SYMBOLS = ["H", "C", "O", "Cu"]


def _rss() -> int:
    """Current resident set, bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _hwm() -> int:
    """Peak resident set (VmHWM), bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _reset_hwm() -> bool:
    """Return freed heap to the system (glibc ``malloc_trim(0)``), then reset VmHWM to the
    current resident set (Linux >= 4.0); False where not allowed. As in scripts/benchmark.py."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# ----------------------------------------------------------------------------- models
def _mace_model(params: dict[str, Any]):
    """ScaleShiftMACE with random weights, built as ``mace_run_train --model MACE`` builds it."""
    from e3nn import o3
    from mace import modules
    from mace.tools import utils

    torch.manual_seed(0)
    z_table = utils.AtomicNumberTable([1, 6, 8, 29])
    channels, max_l = int(params["num_channels"]), int(params["max_L"])
    hidden = o3.Irreps(" + ".join(f"{channels}x{l}{'e' if l % 2 == 0 else 'o'}" for l in range(max_l + 1)))
    block = modules.interaction_classes[params.get("interaction", "RealAgnosticResidualInteractionBlock")]
    return modules.ScaleShiftMACE(
        r_max=float(params["r_max"]),
        num_bessel=int(params.get("num_radial_basis", 8)),
        num_polynomial_cutoff=int(params.get("num_cutoff_basis", 5)),
        max_ell=int(params.get("max_ell", 3)),
        interaction_cls=block,
        interaction_cls_first=block,
        num_interactions=int(params["num_interactions"]),
        num_elements=len(z_table),
        hidden_irreps=hidden,
        MLP_irreps=o3.Irreps(params.get("MLP_irreps", "16x0e")),
        atomic_energies=np.zeros(len(z_table)),
        avg_num_neighbors=float(params.get("avg_num_neighbors", 8.0)),
        atomic_numbers=z_table.zs,
        correlation=int(params["correlation"]),
        gate=torch.nn.functional.silu,
        radial_MLP=list(params.get("radial_MLP", [64, 64, 64])),
        radial_type="bessel",
        atomic_inter_scale=1.0,
        atomic_inter_shift=0.0,
    )


def _mace_calc(model_path: str, dtype: str):
    from mace.calculators import MACECalculator

    return MACECalculator(model_paths=model_path, device="cpu", default_dtype=dtype)


def _nequip_model(params: dict[str, Any]):
    """NequIPGNNModel with random weights (its documented tutorial configuration by default)."""
    from nequip.model import NequIPGNNModel
    from nequip.utils.global_state import set_global_state

    set_global_state(allow_tf32=False)  # what nequip's loaders do first (float64 data dtype)
    return NequIPGNNModel(
        seed=0,
        model_dtype=params.get("dtype", "float32"),
        type_names=SYMBOLS,
        r_max=float(params["r_max"]),
        num_bessels=int(params.get("num_bessels", 8)),
        polynomial_cutoff_p=int(params.get("polynomial_cutoff_p", 6)),
        num_layers=int(params["num_layers"]),
        l_max=int(params["l_max"]),
        parity=bool(params.get("parity", True)),
        num_features=int(params["num_features"]),
        radial_mlp_depth=int(params.get("radial_mlp_depth", 2)),
        radial_mlp_width=int(params.get("radial_mlp_width", 64)),
        avg_num_neighbors=float(params.get("avg_num_neighbors", 8.0)),
        per_type_energy_scales={s: 1.0 for s in SYMBOLS},
        per_type_energy_shifts={s: 0.0 for s in SYMBOLS},
    )


def _nequip_calc(model):
    """``NequIPCalculator`` around a GraphModel, with the transforms ``_from_saved_model`` adds."""
    from nequip.integrations.ase import NequIPCalculator
    from nequip.integrations.utils import basic_transforms, handle_chemical_species_map
    from nequip.nn import graph_model

    model.eval()
    r_max = float(model.metadata[graph_model.R_MAX_KEY])
    type_names = model.metadata[graph_model.TYPE_NAMES_KEY].split(" ")
    species_map = handle_chemical_species_map(None, type_names)
    transforms = basic_transforms(model.metadata, r_max, type_names, species_map)
    return NequIPCalculator(model=model, device="cpu", transforms=transforms)


def _tensornet_checkpoint(params: dict[str, Any], path: str) -> torch.nn.Module:
    """TensorNet (torchmd-net's ``create_model``) with random weights (seed 0) of ``params`` over
    ``torchmd-train``'s defaults, saved at ``path`` as torchmd-net's ``load_model`` reads a
    checkpoint (``hyper_parameters``, ``state_dict``)."""
    from torchmdnet.models.model import create_model
    from torchmdnet.scripts.train import get_argparse

    args = {**vars(get_argparse().parse_args([])), **params}
    torch.manual_seed(0)
    model = create_model(dict(args))
    torch.save({"hyper_parameters": args, "state_dict": model.state_dict()}, path)
    return model


def _tensornet_calc(path: str):
    """torchmd-net's ASE calculator for a checkpoint (forces by autograd of its energy). It reads
    the total charge from ``atoms.info["charge"]``; a neutral system is assumed where unset."""
    from ase.calculators.calculator import all_changes
    from torchmdnet.calculators import TMDNETCalculator

    class _Neutral(TMDNETCalculator):
        def calculate(self, atoms=None, properties=None, system_changes=all_changes):
            if atoms is not None:
                atoms.info.setdefault("charge", 0.0)
            super().calculate(atoms, properties, system_changes)

    return _Neutral(path, device="cpu")


# ----------------------------------------------------------------------------- ops
def op_info(_: dict[str, Any]) -> dict[str, Any]:
    import importlib.metadata

    import ase

    try:
        import e3nn

        e3nn_version = e3nn.__version__
    except ImportError:  # torchmd-net does without
        e3nn_version = None
    out = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "e3nn": e3nn_version,
        "ase": ase.__version__,
        "threads": torch.get_num_threads(),
        "peer": PEER,
    }
    if PEER == "mace":
        # mace's import sets TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD; e3nn 0.4.4's o3 needs it to load its
        # constants, and _mace_model imports e3nn.o3 first: mace must be imported here, before it
        from mace import __version__ as v
    elif PEER == "nequip":
        from nequip import __version__ as v
    else:  # torchmdnet has no __version__
        import torchmdnet  # noqa: F401

        v = importlib.metadata.version("torchmd-net")
    out["version"] = str(v)
    return out


def op_setup(req: dict[str, Any]) -> dict[str, Any]:
    params = req["params"]
    dtype = params.get("dtype", "float32")
    if PEER == "mace":
        model = _mace_model(params).to(getattr(torch, dtype)).eval()
        path = os.path.join(TMP, f"{abs(hash(req['key']))}.model")
        torch.save(model, path)
        calc = _mace_calc(path, dtype)
    elif PEER == "tensornet":
        path = os.path.join(TMP, f"{abs(hash(req['key']))}.ckpt")
        model = _tensornet_checkpoint(params, path)
        calc = _tensornet_calc(path)
    else:
        model = _nequip_model(params)
        calc = _nequip_calc(model)
    n_params = sum(p.numel() for p in model.parameters())
    STATE[req["key"]] = {"structure": req["structure"], "calc": calc}
    atoms = _atoms(req["structure"])
    atoms.calc = calc
    energy = float(atoms.get_potential_energy())
    return {"n_params": n_params, "energy": energy}


def op_md(req: dict[str, Any]) -> dict[str, Any]:
    state = STATE[req["key"]]
    return {"seconds": timed_md(state["structure"], state["calc"], req["steps"], req.get("timestep_fs", 0.5))}


def op_call(req: dict[str, Any]) -> dict[str, Any]:
    state = STATE[req["key"]]
    calc = state["calc"]
    times, peaks = [], []
    for _ in range(req["n"]):
        atoms = _atoms(state["structure"])
        calc.reset()
        reset = _reset_hwm()
        base = _rss()
        start = time.perf_counter()
        calc.calculate(atoms, ["energy", "forces"], ["positions", "numbers", "cell", "pbc"])
        np.asarray(calc.results["forces"])
        times.append(time.perf_counter() - start)
        if reset:
            peaks.append(max(_hwm() - base, 0) / 2**20)
    return {"seconds": float(np.median(times)), "peak_mb": max(peaks) if peaks else None}


def _errors(calc, frames) -> dict[str, float]:
    de, df = [], []
    for ref in frames:
        e_ref, f_ref = ref.get_potential_energy(), ref.get_forces()
        atoms = ref.copy()
        atoms.calc = calc
        de.append(atoms.get_potential_energy() - e_ref)
        df.append(atoms.get_forces() - f_ref)
    de_a, df_a = np.asarray(de), np.concatenate(df)
    return {
        "energy_mae": float(np.abs(de_a).mean()),
        "energy_rmse": float(np.sqrt((de_a**2).mean())),
        "forces_mae": float(np.abs(df_a).mean()),
        "forces_rmse": float(np.sqrt((df_a**2).mean())),
    }


def op_evaluate(req: dict[str, Any]) -> dict[str, Any]:
    """Test errors of each snapshot (a MACE checkpoint ``*.pt``, a NequIP or torchmd-net ``*.ckpt``)."""
    import ase.io

    frames = ase.io.read(req["test"], index=":")
    dtype = req.get("dtype", "float32")
    results = []
    for path in req["snapshots"]:
        if PEER == "mace":
            model = torch.load(req["template"], map_location="cpu", weights_only=False)
            ckpt = torch.load(path, map_location="cpu", weights_only=False)
            model.load_state_dict(ckpt["model"])
            model = model.to(getattr(torch, dtype)).eval()
            model_path = os.path.join(TMP, "snapshot.model")
            torch.save(model, model_path)
            calc = _mace_calc(model_path, dtype)
            step = None
        elif PEER == "tensornet":
            calc = _tensornet_calc(path)
            step = int(torch.load(path, map_location="cpu", weights_only=False)["global_step"])
        else:
            from nequip.integrations.ase import NequIPCalculator

            calc = NequIPCalculator._from_saved_model(path, device="cpu")
            step = int(torch.load(path, map_location="cpu", weights_only=False)["global_step"])
        results.append({"path": path, "global_step": step, **_errors(calc, frames)})
    return {"results": results}


OPS = {"info": op_info, "setup": op_setup, "md": op_md, "call": op_call, "evaluate": op_evaluate}


def main() -> None:
    serve(OPS)


if __name__ == "__main__":
    main()
