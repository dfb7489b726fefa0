"""Peer side of ``scripts/benchmark.py``: schnetpack and torchani timings, as JSON lines.

Runs inside the peers' own virtual environment (torch 2.4.1, schnetpack 2.1.1,
torchani 2.9; ``scripts/benchmark.py --setup-peers`` makes it). It imports nothing from
physnet. It reads one JSON request per line on stdin and answers one JSON line on stdout,
so the parent can alternate it with physnet (A B A B ...) without restarting either.

Requests (``op``):

- ``info``: versions of python, torch, schnetpack, torchani and ase.
- ``setup``: ``{"key", "kind": "spk_schnet" | "ani", "structure", "params"}`` builds the
  model and an ASE calculator for a structure (``structure``: numbers, positions, cell,
  pbc, momenta) and returns the parameter count.
- ``md``: ``{"key", "steps"}`` runs ``steps`` velocity-Verlet steps from the structure's
  initial state; returns ``seconds``.
- ``call``: ``{"key", "n"}`` times ``n`` energy+forces calls from ASE Atoms (neighbour list
  included, nothing reused); returns ``seconds`` (per call, median over the calls).
- ``train``: ``{"key", "frames", "batch_size", "steps"}`` times training steps (forward,
  forces with create_graph, energy+force MSE, backward, AdamW step) on pre-built batches;
  returns ``seconds`` for ``steps`` steps.
- ``accuracy``: trains schnetpack's SchNet with its own Lightning task for a wall-clock budget
  on a split and returns test energy and force MAE.
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

os.environ.setdefault("TORCHANI_NO_WARN_EXTENSIONS", "1")
torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))

STATE: dict[str, dict[str, Any]] = {}
TMP = tempfile.mkdtemp(prefix="physnet-peers-")


def _spk_model(params: dict[str, Any], training: bool = False):
    """schnetpack SchNet with an atom-wise energy head and forces by autograd."""
    import schnetpack as spk
    import schnetpack.transform as trn

    cutoff = float(params["cutoff"])
    representation = spk.representation.SchNet(
        n_atom_basis=params["n_features"],
        n_interactions=params["n_interactions"],
        radial_basis=spk.nn.GaussianRBF(n_rbf=params["n_rbf"], cutoff=cutoff),
        cutoff_fn=spk.nn.CosineCutoff(cutoff),
        n_filters=params["n_filters"],
    )
    post = [] if training else [trn.CastTo64()]
    return spk.model.NeuralNetworkPotential(
        representation=representation,
        input_modules=[spk.atomistic.PairwiseDistances()],
        output_modules=[
            spk.atomistic.Atomwise(n_in=params["n_features"], output_key="energy"),
            spk.atomistic.Forces(energy_key="energy", force_key="forces"),
        ],
        postprocessors=post,
    )


def _spk_neighbor_list(params: dict[str, Any]):
    import schnetpack.transform as trn

    cutoff = float(params["cutoff"])
    kind = params.get("neighbor_list", "ase")
    if kind == "ase":
        return trn.ASENeighborList(cutoff=cutoff)
    if kind == "matscipy":
        return trn.MatScipyNeighborList(cutoff=cutoff)
    if kind == "skin":
        return trn.SkinNeighborList(
            trn.MatScipyNeighborList(cutoff=cutoff), cutoff_skin=params.get("skin", 0.5)
        )
    raise ValueError(f"unknown schnetpack neighbour list {kind!r}")


def _ani_model(params: dict[str, Any]):
    """torchani ANI model with physnet's Behler-Parrinello descriptor grid and widths."""
    import torchani

    return torchani.arch.simple_ani(
        params["symbols"],
        "wb97x-631gd",
        radial_start=params["radial_start"],
        angular_start=params["angular_start"],
        radial_cutoff=params["cutoff"],
        angular_cutoff=params["angular_cutoff"],
        radial_shifts=params["radial_shifts"],
        angular_shifts=params["angular_shifts"],
        sections=params["angular_sections"],
        radial_precision=params["radial_eta"],
        angular_precision=params["angular_eta"],
        angular_zeta=params["angular_zeta"],
        cutoff_fn="cosine",
        repulsion=False,
        activation="celu",
        bias=True,
        self_energies="zero",
        neighborlist=params.get("neighbor_list", "adaptive"),
    )


def op_info(_: dict[str, Any]) -> dict[str, Any]:
    import ase
    import schnetpack
    import torchani

    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "schnetpack": getattr(schnetpack, "__version__", "2.1.1"),
        "torchani": torchani.__version__,
        "ase": ase.__version__,
        "threads": torch.get_num_threads(),
    }


def op_setup(req: dict[str, Any]) -> dict[str, Any]:
    params, kind = req["params"], req["kind"]
    torch.manual_seed(0)
    atoms = _atoms(req["structure"])
    dtype = getattr(torch, params.get("dtype", "float32"))
    state: dict[str, Any] = {"kind": kind, "structure": req["structure"], "dtype": dtype}
    if kind == "spk_schnet":
        import schnetpack as spk

        model = _spk_model(params).eval()
        path = os.path.join(TMP, f"{req['key']}.pt")
        torch.save(model, path)
        calc = spk.interfaces.SpkCalculator(
            model_file=path,
            neighbor_list=_spk_neighbor_list(params),
            energy_unit="eV",
            position_unit="Ang",
            dtype=dtype,
        )
        converter = spk.interfaces.AtomsConverter(
            neighbor_list=_spk_neighbor_list(
                {**params, "neighbor_list": params.get("call_neighbor_list", "ase")}
            ),
            dtype=dtype,
        )
        state.update(model=calc.model, calc=calc, converter=converter)
        n_params = sum(p.numel() for p in model.parameters())
    elif kind == "ani":
        model = _ani_model(params).to(dtype).eval()
        state.update(model=model, calc=model.ase())
        n_params = sum(p.numel() for p in model.parameters())
        state["widths"] = {
            s: [layer.out_features for layer in net.layers]
            for s, net in model.neural_networks.atomics.items()
        }
    else:
        raise ValueError(f"unknown kind {kind!r}")
    STATE[req["key"]] = state
    atoms.calc = state["calc"]
    energy = float(atoms.get_potential_energy())
    return {"n_params": n_params, "energy": energy, "widths": state.get("widths")}


def op_md(req: dict[str, Any]) -> dict[str, Any]:
    state = STATE[req["key"]]
    return {"seconds": timed_md(state["structure"], state["calc"], req["steps"], req.get("timestep_fs", 0.5))}


def _ani_energy_forces(model, atoms, dtype) -> tuple[float, np.ndarray]:
    species = torch.as_tensor(atoms.numbers, dtype=torch.long).unsqueeze(0)
    coords = torch.tensor(atoms.positions, dtype=dtype).unsqueeze(0).requires_grad_(True)
    if atoms.pbc.any():
        cell = torch.tensor(np.asarray(atoms.cell), dtype=dtype)
        pbc = torch.tensor(atoms.pbc, dtype=torch.bool)
        energy = model((species, coords), cell=cell, pbc=pbc).energies
    else:
        energy = model((species, coords)).energies
    forces = -torch.autograd.grad(energy.sum(), coords)[0]
    return float(energy.sum()), forces[0].numpy()


def op_call(req: dict[str, Any]) -> dict[str, Any]:
    state = STATE[req["key"]]
    atoms = _atoms(state["structure"])
    times = []
    for _ in range(req["n"]):
        start = time.perf_counter()
        if state["kind"] == "ani":
            _ani_energy_forces(state["model"], atoms, state["dtype"])
        else:
            out = state["model"](state["converter"](atoms))
            out["forces"].detach().numpy()
        times.append(time.perf_counter() - start)
    return {"seconds": float(np.median(times))}


def _read_frames(path: str, indices: list[int]):
    import ase.io

    frames = ase.io.read(path, index=":")
    return [frames[i] for i in indices]


def op_train(req: dict[str, Any]) -> dict[str, Any]:
    """Training-step throughput of schnetpack's SchNet on pre-built batches."""
    import schnetpack as spk

    params = req["params"]
    key = req["key"]
    if key not in STATE:
        torch.manual_seed(0)
        model = _spk_model(params, training=True).train()
        frames = _read_frames(req["data"], req["frames"])
        converter = spk.interfaces.AtomsConverter(
            neighbor_list=_spk_neighbor_list(params), dtype=torch.float32
        )
        batches = []
        bs = req["batch_size"]
        for k in range(0, len(frames) - bs + 1, bs):
            chunk = frames[k : k + bs]
            inputs = converter(chunk)
            inputs["energy_t"] = torch.tensor([a.get_potential_energy() for a in chunk], dtype=torch.float32)
            inputs["forces_t"] = torch.tensor(
                np.concatenate([a.get_forces() for a in chunk]), dtype=torch.float32
            )
            batches.append(inputs)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        STATE[key] = {"model": model, "batches": batches, "optimizer": optimizer}
    state = STATE[key]
    model, optimizer = state["model"], state["optimizer"]
    batches = state["batches"][: req["steps"]]
    start = time.perf_counter()
    for inputs in batches:
        out = model(dict(inputs))
        loss = (out["forces"] - inputs["forces_t"]).pow(2).mean() + 1e-6 * (
            out["energy"] - inputs["energy_t"]
        ).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    seconds = time.perf_counter() - start
    n_params = sum(p.numel() for p in model.parameters())
    return {"seconds": seconds, "frames": len(batches) * req["batch_size"], "n_params": n_params}


def op_accuracy(req: dict[str, Any]) -> dict[str, Any]:
    """schnetpack's own Lightning task, trained for ``budget_minutes`` on the given split."""
    import pytorch_lightning as pl
    import schnetpack as spk
    import schnetpack.transform as trn
    import torchmetrics
    from ase.io import read

    params = req["params"]
    workdir = tempfile.mkdtemp(prefix="spk-acc-", dir=req.get("workdir"))
    frames = read(req["data"], index=":")
    db_path = os.path.join(workdir, "data.db")
    dataset = spk.data.ASEAtomsData.create(
        db_path, distance_unit="Ang", property_unit_dict={"energy": "kcal/mol", "forces": "kcal/mol/Ang"}
    )
    dataset.add_systems(
        [{"energy": np.array([a.get_potential_energy()]), "forces": a.get_forces()} for a in frames], frames
    )
    split_file = os.path.join(workdir, "split.npz")
    np.savez(
        split_file,
        train_idx=np.asarray(req["train"]),
        val_idx=np.asarray(req["val"]),
        test_idx=np.asarray(req["test"]),
    )
    cutoff = float(params["cutoff"])
    data = spk.data.AtomsDataModule(
        db_path,
        batch_size=req["batch_size"],
        distance_unit="Ang",
        property_units={"energy": "kcal/mol", "forces": "kcal/mol/Ang"},
        num_train=len(req["train"]),
        num_val=len(req["val"]),
        num_test=len(req["test"]),
        split_file=split_file,
        transforms=[
            trn.ASENeighborList(cutoff=cutoff),
            trn.RemoveOffsets("energy", remove_mean=True, remove_atomrefs=False),
            trn.CastTo32(),
        ],
        num_workers=0,
        pin_memory=False,
    )
    data.prepare_data()
    data.setup()
    torch.manual_seed(0)
    model = _spk_model(params, training=True)
    model.postprocessors = torch.nn.ModuleList(
        [trn.CastTo64(), trn.AddOffsets("energy", add_mean=True, add_atomrefs=False)]
    )
    outputs = [
        spk.task.ModelOutput(
            name="energy",
            loss_fn=torch.nn.MSELoss(),
            loss_weight=req.get("energy_weight", 1.0) / (1.0 + req.get("forces_weight", 10.0)),
            metrics={"MAE": torchmetrics.MeanAbsoluteError()},
        ),
        spk.task.ModelOutput(
            name="forces",
            loss_fn=torch.nn.MSELoss(),
            loss_weight=req.get("forces_weight", 10.0) / (1.0 + req.get("forces_weight", 10.0)),
            metrics={"MAE": torchmetrics.MeanAbsoluteError()},
        ),
    ]
    task = spk.task.AtomisticTask(
        model=model,
        outputs=outputs,
        optimizer_cls=torch.optim.AdamW,
        optimizer_args={"lr": req.get("lr", 1e-3)},
        scheduler_cls=spk.train.ReduceLROnPlateau,
        scheduler_args={"factor": 0.5, "patience": 10},
        scheduler_monitor="val_loss",
    )
    budget = float(req["budget_minutes"]) * 60.0
    trainer = pl.Trainer(
        max_time={"seconds": int(budget)},
        max_epochs=100000,
        default_root_dir=workdir,
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
        accelerator="cpu",
        inference_mode=False,  # forces are gradients: validation and test need autograd
        callbacks=[pl.callbacks.ModelCheckpoint(dirpath=workdir, monitor="val_loss", save_top_k=1)],
    )
    start = time.perf_counter()
    trainer.fit(task, datamodule=data)
    trained = time.perf_counter() - start
    best = trainer.checkpoint_callback.best_model_path
    result = trainer.test(task, datamodule=data, ckpt_path=best or None, verbose=False)[0]
    return {
        "energy_mae": float(result["test_energy_MAE"]),
        "forces_mae": float(result["test_forces_MAE"]),
        "epochs": int(trainer.current_epoch),
        "train_seconds": trained,
        "n_params": sum(p.numel() for p in model.parameters()),
    }


OPS = {
    "info": op_info,
    "setup": op_setup,
    "md": op_md,
    "call": op_call,
    "train": op_train,
    "accuracy": op_accuracy,
}


def main() -> None:
    serve(OPS)


if __name__ == "__main__":
    main()
