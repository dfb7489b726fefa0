"""One epoch of every energy model and of the GNS on the device, with checkpoint and resume,
and the host syncs of a training step held to each model's budget."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import physnet
from physnet.data import keys as K
from physnet.train.config import load_config
from physnet.train.fit import train

from .conftest import SMALL, ethanol, host_syncs, potential

pytestmark = pytest.mark.gpu

ROOT = Path(__file__).resolve().parents[2]
WATER = ROOT / "data" / "mpm_water" / "water_fixture.npz"

#: Host syncs of one training step (forward, force loss, backward) on a batch of 10 ethanol
#: molecules; each one is a data-dependent size. SchNet: the largest cell shift and the check
#: that every edge has its reverse (edge pairing, physnet.data.neighbors.edge_pairs). Behler-
#: Parrinello: atoms per element (one network call each), the number of angle triplets, and the
#: nonzero of the angular cutoff mask.
SYNC_BUDGET = {"schnet": 2, "behler_parrinello": 3, "egnn": 0, "se3_transformer": 0}


def _accelerator(device: torch.device) -> list[str]:
    if device.type == "cuda":
        return ["trainer.accelerator=gpu", f"trainer.devices=[{device.index or 0}]"]
    return ["trainer.accelerator=cpu", "trainer.devices=1"]


def _model_overrides(name: str) -> list[str]:
    out = [f"model.name={name}"]
    for key, value in SMALL[name].items():
        out.append(f"model.{key}={json.dumps(value)}")
    return out


@pytest.mark.parametrize("name", sorted(SMALL))
def test_one_epoch_then_resume_on_the_device(
    name: str, device: torch.device, emt_molecule_file: Path, tmp_path: Path
) -> None:
    """``physnet train`` on the device for one epoch (last.ckpt written), then ``--resume`` for
    a second epoch: the step count continues and the saved potential predicts the same as the
    checkpoint."""
    run_dir = tmp_path / name
    common = [
        f"run_dir={run_dir}",
        f"data.path={emt_molecule_file}",
        "data.energy_unit=eV",
        "data.length_unit=Å",
        "data.train=40",
        "data.val=10",
        "data.batch_size=10",
        "trainer.progress_bar=false",
        "task.warmup_steps=2",
        *_accelerator(device),
        *_model_overrides(name),
    ]
    train(load_config(None, [*common, "trainer.max_epochs=1"]))
    first = json.loads((run_dir / "test_metrics.json").read_text())
    assert first["optimizer_steps"] == 4 and (run_dir / "checkpoints" / "last.ckpt").is_file()
    train(load_config(None, [*common, "trainer.max_epochs=2"]), resume=True)
    second = json.loads((run_dir / "test_metrics.json").read_text())
    assert second["optimizer_steps"] == 8 and np.isfinite(second["test"]["forces_mae"])
    atoms = ethanol()
    energies = []
    for path in (run_dir / "potential.pt", run_dir / "checkpoints" / "last.ckpt"):
        atoms.calc = physnet.Calculator(str(path), device=device)
        energies.append(atoms.get_potential_energy())
    assert energies[0] == pytest.approx(energies[1], rel=1e-5)


def test_cgnet_epoch_on_the_device(device: torch.device, tmp_path: Path) -> None:
    """CGnet force matching with fitted priors (positions and forces .npy) for one epoch."""
    rng = np.random.default_rng(0)
    frame = np.array([[0, 2.15, -0.13], [-0.51, 0.98, -0.51], [-0.83, -0.15, 0.39], [0.1, -1.29, 0.06],
                      [0.08, -2.28, 0.98]])  # fmt: skip
    pos = frame[None] + rng.normal(scale=0.08, size=(100, 5, 3))
    np.save(tmp_path / "pos.npy", pos)
    np.save(tmp_path / "forces.npy", rng.normal(size=(100, 5, 3)))
    overrides = [
        f"run_dir={tmp_path / 'run'}",
        f"data.path={tmp_path / 'pos.npy'}",
        f"data.forces_path={tmp_path / 'forces.npy'}",
        "data.numbers=[C, N, C, C, N]",
        "data.energy_unit=kcal/mol",
        "data.length_unit=Å",
        "data.batch_size=20",
        "model.name=cgnet",
        "model.species=[C, N]",
        "model.n_beads=5",
        "model.n_layers=2",
        "model.width=16",
        "priors={bonds: {name: harmonic_bonds}, angles: {name: harmonic_angles}}",
        "task.energy_weight=0",
        "task.fit_references=false",
        "trainer.max_epochs=1",
        "trainer.progress_bar=false",
        *_accelerator(device),
    ]
    run_dir = train(load_config(None, overrides))
    report = json.loads((run_dir / "test_metrics.json").read_text())
    assert report["optimizer_steps"] == 4 and np.isfinite(report["test"]["force_matching_loss"])


def test_gns_training_checkpoint_and_resume_on_the_device(device: torch.device, tmp_path: Path) -> None:
    """GNSTask on the device: 3 steps, checkpoint, resume to 6 steps; the resumed run starts
    from the checkpoint's weights and Adam state (6 Adam steps at the end) and trains on."""
    import pytorch_lightning as pl

    from physnet.data.trajectories import WindowDataset, collate_windows, load_trajectories
    from physnet.train.gns import GNSTask

    data = load_trajectories(WATER)

    def run(max_steps: int, ckpt: str | None = None) -> tuple[GNSTask, pl.Trainer]:
        pl.seed_everything(0, verbose=False)
        model = physnet.models.build_simulator(
            "gns", bounds=data.bounds.tolist(), latent_size=16, hidden_size=16, n_message_passing=2
        )
        model.fit_statistics(data.positions)
        task = GNSTask(model, lr=1e-3, noise_std=1e-4, seed=0)
        loader = torch.utils.data.DataLoader(
            WindowDataset(data, model.window), batch_size=2, collate_fn=collate_windows,
            shuffle=True, generator=torch.Generator().manual_seed(0),
        )  # fmt: skip
        trainer = pl.Trainer(
            max_steps=max_steps, accelerator="gpu" if device.type == "cuda" else "cpu",
            devices=[device.index or 0] if device.type == "cuda" else 1, default_root_dir=tmp_path,
            logger=False, enable_progress_bar=False, enable_model_summary=False,
            limit_val_batches=0, num_sanity_val_steps=0, enable_checkpointing=False,
        )  # fmt: skip
        trainer.fit(task, loader, ckpt_path=ckpt)
        assert trainer.global_step == max_steps
        return task, trainer

    first, trainer = run(3)
    trainer.save_checkpoint(tmp_path / "step3.ckpt")
    saved = torch.load(tmp_path / "step3.ckpt", map_location="cpu", weights_only=False)
    resumed, trainer = run(6, ckpt=str(tmp_path / "step3.ckpt"))
    steps = {int(s["step"]) for s in trainer.optimizers[0].state.values()}
    assert steps == {6}, steps  # Adam's state came back from the checkpoint and went on
    moved = [
        name
        for name, value in resumed.state_dict().items()
        if value.is_floating_point() and not torch.equal(value.cpu(), saved["state_dict"][name])
    ]
    assert moved, "no weight changed after resuming"


@pytest.mark.parametrize("name", sorted(SMALL))
def test_training_step_host_syncs_within_budget(name: str, device: torch.device) -> None:
    """Forward, force loss and backward of a training step make at most SYNC_BUDGET[name]
    host syncs (CUDA: counted by torch.cuda.set_sync_debug_mode; CPU: physnet.testing's
    counter of the calls that would sync)."""
    pot = potential(name).to(device).train()
    graphs = [physnet.data.from_ase(ethanol(), pot.cutoff, device=device) for _ in range(10)]
    batch = physnet.data.collate(graphs)

    def step() -> None:
        out = pot(batch, compute_forces=True, compute_stress=False, check=False)
        loss = out[K.ENERGY].pow(2).mean() + out[K.FORCES].pow(2).mean()
        loss.backward()

    step()  # warm up: lazy set-up (library handles, caches) is not a per-step cost

    with host_syncs(device) as syncs:
        step()
    assert len(syncs) <= SYNC_BUDGET[name], f"{len(syncs)} host syncs > {SYNC_BUDGET[name]}: {syncs}"
