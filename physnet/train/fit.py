"""Training driver: data -> split -> references and scale -> Lightning fit -> test -> plots.

``physnet train CONFIG.yaml`` calls :func:`train`. A run directory holds the
resolved ``config.yaml``, ``split.json``, ``logs/metrics.csv`` (earlier parts of a
resumed run as ``logs/metrics_partNNN.csv``; TensorBoard logs when installed),
``checkpoints/best.ckpt`` and ``checkpoints/last.ckpt``, the final self-contained
``potential.pt`` (EMA weights), ``test_metrics.json`` and PNGs of the learning
curves and parity plots.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from physnet.data import keys as K
from physnet.data.checks import plausibility
from physnet.data.datasets import GraphDataset, load_split, make_loader, make_split, read_frames, save_split
from physnet.data.graph import atomic_number
from physnet.errors import UnknownKeyError, UserError, atomic_write, check_writable
from physnet.models.registry import build
from physnet.potential import Potential
from physnet.train.config import RunConfig
from physnet.train.finetune import (
    FINETUNE_KEYS,
    freeze,
    load_weights,
    read_init,
    resolve_model,
    split_model_config,
)
from physnet.train.runner import rank as _rank
from physnet.train.runner import say as _say
from physnet.units import energy_factor, length_factor

__all__ = [
    "train",
    "train_committee",
    "evaluate_committee",
    "fit_reference_energies",
    "fit_energy_scale",
    "predict",
    "prepare",
    "build_priors",
]

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def fit_reference_energies(
    dataset: GraphDataset,
    indices: np.ndarray,
    atomic_numbers: Sequence[int],
    baseline: np.ndarray | None = None,
) -> dict[int, float]:
    """Per-element energies e_Z minimising sum_frames (E - b - sum_i e_{Z_i})^2 over ``indices``,
    with ``b`` the ``baseline`` energies [len(indices)] (e.g. a trained model's; default 0).

    Solved with ``numpy.linalg.lstsq`` (minimum-norm when the composition does not vary,
    e.g. one molecule: then the shares are split evenly in the least-squares sense).
    """
    column = {z: n for n, z in enumerate(atomic_numbers)}
    counts = np.zeros((len(indices), len(atomic_numbers)))
    energies = np.zeros(len(indices))
    for row, idx in enumerate(indices):
        graph = dataset[int(idx)]
        for z, c in zip(*np.unique(graph[K.Z].numpy(), return_counts=True), strict=True):
            counts[row, column[int(z)]] = c
        energies[row] = float(graph[K.ENERGY][0]) - (0.0 if baseline is None else float(baseline[row]))
    solution, *_ = np.linalg.lstsq(counts, energies, rcond=None)
    return {z: float(solution[column[z]]) for z in atomic_numbers}


def fit_energy_scale(dataset: GraphDataset, indices: np.ndarray, potential: Potential) -> tuple[float, float]:
    """(scale, shift) from the train split: scale = force RMS (energy residual std per atom
    if the data has no forces), shift = mean residual energy per atom after references
    (0 if the data has no energies, e.g. force matching)."""
    refs = potential.atom_refs.double()
    residuals, forces = [], []
    for idx in indices:
        graph = dataset[int(idx)]
        ref = refs[potential.model.species(graph[K.Z])].sum()
        if K.ENERGY in graph:
            residuals.append(float(graph[K.ENERGY][0] - ref) / graph[K.Z].shape[0])
        if K.FORCES in graph:
            forces.append(graph[K.FORCES].double().reshape(-1))
    shift = float(np.mean(residuals)) if residuals else 0.0
    if forces:
        scale = float(torch.cat(forces).pow(2).mean().sqrt())
    else:
        scale = float(np.std(residuals))
    if not np.isfinite(scale) or scale <= 0:
        scale = 1.0
    return scale, shift


def prepare(
    cfg: RunConfig, run_dir: Path, resume: bool
) -> tuple[Potential, GraphDataset, dict[str, np.ndarray]]:
    """Read and check the data, split it, build the potential with fitted references and scale.

    Everything that can be wrong with the inputs fails here, before any training.
    """
    d = cfg.data
    dtype = _check_inputs(cfg)
    frames = read_frames(
        _resolve_data_path(d.path),
        numbers=d.numbers,
        forces_path=d.forces_path or None,
        drop_nonfinite=d.drop_nonfinite,
        key_map=d.keys or None,
    )
    present = sorted({int(z) for a in frames for z in np.unique(a.numbers)})
    hparams, tune = split_model_config(cfg.model)
    init = read_init(tune["init_from"]) if tune["init_from"] else None
    hparams, species = _model_species(cfg, hparams, tune, init, present)
    try:
        model = build(cfg.model["name"], species=species, **hparams)
    except UnknownKeyError as err:
        raise UnknownKeyError(f"config section model: {err}") from None
    dataset = GraphDataset(
        frames, model.cutoff, dtype=dtype, require=_labels(cfg, frames), source=d.path, progress=_rank() == 0
    )
    if _rank() == 0:
        for warning in plausibility(frames, d.energy_unit, d.length_unit, cutoff=model.cutoff):
            print(f"physnet: warning: {d.path}: {warning}", file=sys.stderr, flush=True)
    split = _split(cfg, run_dir, resume, len(dataset))
    if init is not None:  # fine-tuning
        return _prepare_finetune(cfg, model, init, tune, resume, dataset, split, dtype)
    c = cfg.task
    if not resume:
        model.to(dtype).fit_statistics([dataset[int(i)] for i in split["train"]])
    train_graphs = None if resume else [dataset[int(i)] for i in split["train"]]
    priors = build_priors(cfg.priors, model, d.energy_unit, d.length_unit, train_graphs, dtype)
    potential = Potential(model, priors, energy_unit=d.energy_unit, length_unit=d.length_unit)
    has_energy = dataset.energies is not None
    if c.fit_references and has_energy:
        refs = fit_reference_energies(dataset, split["train"], model.species.atomic_numbers)
        potential.atom_refs.copy_(torch.tensor([refs[z] for z in model.species.atomic_numbers]))
    if c.fit_scale:
        scale, shift = fit_energy_scale(dataset, split["train"], potential)
        potential.energy_scale.fill_(scale)
        potential.energy_shift.fill_(shift)
    return potential.to(dtype), dataset, split


def _check_inputs(cfg: RunConfig) -> torch.dtype:
    """Refuse a config without data or units, a bad dtype or split size before reading anything;
    returns the dtype."""
    d = cfg.data
    if not d.path:
        raise ValueError("data.path is empty: give the training data file, e.g. data.path=train.xyz")
    if not d.energy_unit or not d.length_unit:
        raise ValueError(
            "data.energy_unit and data.length_unit are required (e.g. data.energy_unit=kcal/mol "
            "data.length_unit=Å): physnet never guesses units"
        )
    energy_factor(d.energy_unit)
    length_factor(d.length_unit)
    if cfg.trainer.dtype not in DTYPES:
        raise ValueError(f"trainer.dtype must be float32 or float64, got {cfg.trainer.dtype!r}")
    for name in ("train", "val", "test"):
        split_size(name, getattr(d, name))  # refuse data.train=1.5 before reading anything
    return DTYPES[cfg.trainer.dtype]


def _model_species(
    cfg: RunConfig, hparams: dict[str, Any], tune: dict[str, Any], init: Any, present: list[int]
) -> tuple[dict[str, Any], Any]:
    """The model's hyper-parameters and species: the config's (default: the elements ``present``
    in the data), or with ``init`` (fine-tuning) the trained model's, checked against the data's
    units; ``cfg.model`` then records the resolved model in full."""
    d = cfg.data
    if init is not None:
        if init[0]["length_unit"] != d.length_unit:
            raise ValueError(
                f"model.init_from was trained in {init[0]['length_unit']} but data.length_unit is "
                f"{d.length_unit}; convert the data's positions (cutoffs and weights are in the trained unit)"
            )
        if init[0]["priors"] and cfg.priors:
            raise ValueError("model.init_from brings its own priors; remove the config's priors section")
        if init[0]["priors"] and init[0]["energy_unit"] != d.energy_unit:
            raise ValueError(
                f"model.init_from has priors in {init[0]['energy_unit']} but data.energy_unit is "
                f"{d.energy_unit}; convert the data's energies"
            )
        hparams, species = resolve_model(init[0], cfg.model["name"], hparams, present, tune["add_species"])
        extra = {k: cfg.model[k] for k in FINETUNE_KEYS if k in cfg.model}
        cfg.model = {"name": cfg.model["name"], "species": species, **hparams, **extra}  # recorded in full
        return dict(hparams), species
    species = hparams.pop("species", None)
    if species is None:
        return hparams, present
    known = {atomic_number(s) for s in species}
    missing = [z for z in present if z not in known]
    if missing:
        from ase.data import chemical_symbols

        names = [chemical_symbols[z] for z in missing]
        raise ValueError(f"the data contains element(s) {names} outside model.species {species}")
    return hparams, species


def _labels(cfg: RunConfig, frames: list[Any]) -> list[str]:
    """The labels the loss needs (energy, forces, stress); stress needs every frame's cell regular."""
    c, d = cfg.task, cfg.data
    require = (
        (["energy"] if c.energy_weight > 0 else [])
        + (["forces"] if c.forces_weight > 0 else [])
        + (["stress"] if d.stress or c.stress_weight > 0 else [])
    )
    if not require:
        raise ValueError(
            "task.energy_weight, task.forces_weight and task.stress_weight are all 0: nothing to fit"
        )
    if "stress" in require:  # checked here once, so that training steps need not (no host sync)
        flat = [k for k, a in enumerate(frames) if not abs(np.linalg.det(np.asarray(a.cell))) > 0]
        if flat:
            raise ValueError(
                f"frame {flat[0]} of {d.path} has a singular cell; stress needs a periodic cell with "
                "three non-zero, independent lattice vectors (or set data.stress=false)"
            )
    return require


def _split(cfg: RunConfig, run_dir: Path, resume: bool, n: int) -> dict[str, np.ndarray]:
    """The run's split: its own ``split.json`` when resuming (or on DDP ranks > 0), else
    ``data.split_file``, else a new one; train and val must not be empty."""
    d = cfg.data
    split_path = run_dir / "split.json"
    if resume or (d.split_file == "" and split_path.is_file() and _rank() != 0):
        split = load_split(split_path, n=n)
    elif d.split_file:
        split = load_split(d.split_file, n=n)
    else:
        sizes = [split_size(name, getattr(d, name)) for name in ("train", "val", "test")]
        split = make_split(n, *sizes, seed=d.seed, blocks=d.blocks)
    for name in ("train", "val"):
        if len(split[name]) == 0:
            raise ValueError(f"the {name} split is empty; change data.{name} or data.split_file")
    return split


def split_size(name: str, value: float | None) -> float | int | None:
    """``data.<name>`` as :func:`make_split` takes it: a fraction in (0, 1] or a whole count > 1;
    ``UserError`` for anything else (``data.train=1.5`` is neither, and is never rounded)."""
    if value is None:
        return None
    value = float(value)
    if not np.isfinite(value) or value < 0:
        raise UserError(f"data.{name}={value:g} must be a fraction in (0, 1] or a count of frames")
    if value > 1:
        if not value.is_integer():
            raise UserError(
                f"data.{name}={value:g} is neither a fraction in (0, 1] nor a whole number of frames "
                "(it is never rounded); give a count such as 800 or a fraction such as 0.8"
            )
        return int(value)
    return value


def _prepare_finetune(
    cfg: RunConfig,
    model: torch.nn.Module,
    init: tuple[dict[str, Any], dict[str, torch.Tensor]],
    tune: dict[str, Any],
    resume: bool,
    dataset: GraphDataset,
    split: dict[str, np.ndarray],
    dtype: torch.dtype,
) -> tuple[Potential, GraphDataset, dict[str, np.ndarray]]:
    """:func:`prepare` for ``model.init_from``: the trained weights, references and scale
    kept or refitted as ``model.references`` / ``model.scale`` say, parts frozen."""
    from physnet.nn.priors import build_prior

    init_config, state = init
    d, c = cfg.data, cfg.task
    priors = {name: build_prior(p) for name, p in init_config["priors"].items()}
    potential = Potential(model, priors, energy_unit=d.energy_unit, length_unit=d.length_unit).to(dtype)
    old_species = [atomic_number(s) for s in init_config["model"]["species"]]
    new_species = len(potential.species) > len(old_species)
    if new_species and tune["references"] == "keep":
        raise ValueError(
            "model.add_species adds elements without reference energies; use model.references=refit"
        )
    frozen = freeze(potential.model, tune["freeze"])
    if resume:  # the checkpoint holds the weights
        return potential, dataset, split
    factor = energy_factor(init_config["energy_unit"]) / energy_factor(d.energy_unit)
    load_weights(potential, state, old_species, factor)
    train_idx = split["train"]
    if tune["scale"] == "refit" and c.fit_scale:
        scale, _ = fit_energy_scale(dataset, train_idx, potential)
        potential.energy_scale.fill_(scale)
    if tune["references"] == "refit" and c.fit_references and dataset.energies is not None:
        # references for what the trained model leaves unexplained on the new data
        potential.energy_shift.zero_()
        potential.atom_refs.zero_()
        baseline = _energies(potential, dataset, train_idx, d.eval_batch_size)
        refs = fit_reference_energies(dataset, train_idx, model.species.atomic_numbers, baseline)
        potential.atom_refs.copy_(torch.tensor([refs[z] for z in model.species.atomic_numbers]))
    _say(
        f"fine-tuning from {tune['init_from']} ({init_config['model']['name']}, trained in "
        f"{init_config['energy_unit']}): references {tune['references']}, scale {tune['scale']}"
        + (f", {frozen} parameters frozen ({', '.join(tune['freeze'])})" if tune["freeze"] else "")
        + (f", new element(s) {potential.species[len(old_species) :]}" if new_species else "")
    )
    return potential, dataset, split


@torch.no_grad()
def _energies(
    potential: Potential, dataset: GraphDataset, indices: np.ndarray, batch_size: int
) -> np.ndarray:
    """Total energies [len(indices)] the potential predicts for ``indices``, in its unit."""
    out, mode = [], potential.training
    potential.eval()
    for batch in make_loader(dataset, indices, batch_size, shuffle=False):
        pred = potential(batch, compute_forces=False, compute_stress=False)
        out.append(pred[K.ENERGY].double().numpy())
    potential.train(mode)
    return np.concatenate(out)


def build_priors(
    spec: dict[str, dict[str, Any]],
    model: torch.nn.Module,
    energy_unit: str,
    length_unit: str,
    train_graphs: Sequence[dict[str, torch.Tensor]] | None,
    dtype: torch.dtype = torch.float32,
) -> dict[str, torch.nn.Module]:
    """Priors from the config's ``priors`` section, fitted on the training graphs.

    Each entry ``term: {name: ..., **kwargs}`` builds ``physnet.nn.priors.PRIORS[name]``;
    arguments the class takes and the entry omits are filled in: ``species`` from the
    model, ``n_beads`` from the first training graph, and the data's ``energy_unit`` and
    ``length_unit``. A prior with a ``fit`` method (the CG priors' Boltzmann inversion) is
    fitted on ``train_graphs`` (in float64); with ``train_graphs=None`` (a resumed run)
    its buffers come from the checkpoint instead.
    """
    import inspect

    from physnet.nn.priors import PRIORS

    priors: dict[str, torch.nn.Module] = {}
    for term, entry in spec.items():
        kwargs = dict(entry)
        name = kwargs.pop("name")
        if name not in PRIORS:
            raise ValueError(f"priors.{term}: unknown prior {name!r}; available: {sorted(PRIORS)}")
        cls = PRIORS[name]
        params = inspect.signature(cls.__init__).parameters
        defaults: dict[str, Any] = {
            "species": list(model.species.atomic_numbers) if hasattr(model, "species") else None,
            "energy_unit": energy_unit,
            "length_unit": length_unit,
        }
        if train_graphs:
            defaults["n_beads"] = int(train_graphs[0][K.N_ATOMS][0])
        elif "n_beads" in params and "n_beads" not in kwargs:
            defaults["n_beads"] = int(getattr(model, "n_beads", 0)) or None
        for key, value in defaults.items():
            if key in params and key not in kwargs and value is not None:
                kwargs[key] = value
        try:
            prior = cls(**kwargs)
        except TypeError as err:
            raise ValueError(f"priors.{term} ({name}): {err}") from None
        if hasattr(prior, "fit") and train_graphs is not None:
            graphs = [
                {k: v.double() if v.is_floating_point() else v for k, v in g.items()} for g in train_graphs
            ]
            prior.fit(graphs)
        priors[term] = prior.to(dtype)
    return priors


def _resolve_data_path(path: str) -> str:
    p = Path(path)
    if p.exists():
        return str(p)
    from physnet.data import embedded

    try:  # an embedded data set by name
        return str(embedded.path(path))
    except KeyError as err:
        raise FileNotFoundError(
            f"data file {path} does not exist; {err.args[0] if err.args else ''}"
        ) from None


@torch.no_grad()
def predict(
    potential: Potential, dataset: GraphDataset, indices: np.ndarray, batch_size: int = 50
) -> dict[str, np.ndarray]:
    """Reference and predicted energies [n], forces [n_atoms_total, 3] and, where the data has it,
    stress [n, 3, 3] on ``indices``, with atom counts."""
    from physnet.data.graph import to_device

    device = next(potential.parameters()).device
    potential = potential.eval()
    keys = ("energy", "energy_pred", "forces", "forces_pred", "stress", "stress_pred", "n_atoms")
    out: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    for batch in make_loader(dataset, indices, batch_size, shuffle=False):
        batch = to_device(batch, device)
        has_stress = K.STRESS in batch
        pred = potential(batch, compute_forces=True, compute_stress=has_stress)
        if K.ENERGY in batch:
            out["energy"].append(batch[K.ENERGY].cpu().double().numpy())
        out["energy_pred"].append(pred[K.ENERGY].detach().cpu().double().numpy())
        out["n_atoms"].append(batch[K.N_ATOMS].cpu().numpy())
        if K.FORCES in batch:
            out["forces"].append(batch[K.FORCES].cpu().double().numpy())
            out["forces_pred"].append(pred[K.FORCES].cpu().double().numpy())
        if has_stress:
            out["stress"].append(batch[K.STRESS].cpu().double().numpy())
            out["stress_pred"].append(pred[K.STRESS].cpu().double().numpy())
    return {k: np.concatenate(v) for k, v in out.items() if v}


def error_table(pred: dict[str, np.ndarray]) -> dict[str, float]:
    """MAE / RMSE of energy, energy per atom, force components and (if present) stress components,
    and the force-matching loss, the mean over atoms of |F_pred - F_ref|^2 (energy unit^2/length^2)."""
    table: dict[str, float] = {}
    if "energy" in pred:
        de = pred["energy_pred"] - pred["energy"]
        for name, err in (("energy", de), ("energy_per_atom", de / pred["n_atoms"])):
            table[f"{name}_mae"] = float(np.abs(err).mean())
            table[f"{name}_rmse"] = float(np.sqrt((err**2).mean()))
    if "forces" in pred:
        df = pred["forces_pred"] - pred["forces"]
        table["forces_mae"] = float(np.abs(df).mean())
        table["forces_rmse"] = float(np.sqrt((df**2).mean()))
        # force-matching loss of CG models (Wang et al. 2019): mean over atoms of |dF|^2
        table["force_matching_loss"] = float((df**2).sum(-1).mean())
    if "stress" in pred:
        ds = pred["stress_pred"] - pred["stress"]
        table["stress_mae"] = float(np.abs(ds).mean())
        table["stress_rmse"] = float(np.sqrt((ds**2).mean()))
    return table


# what a run leaves in its directory: a directory holding one of these but no checkpoints is a
# finished (or someone else's) run that a new run would overwrite
RUN_RESULTS = ("potential.pt", "config.yaml", "test_metrics.json")


def train(
    cfg: RunConfig,
    resume: bool = False,
    callbacks: Sequence[Any] = (),
    overwrite: bool = False,
    config_file: str | os.PathLike | None = None,
) -> Path:
    """Run (or resume) a training run; returns the run directory.

    A new run refuses a run directory that already holds checkpoints or results
    (:data:`RUN_RESULTS`) unless ``overwrite``; then the old checkpoints are deleted first, so
    that a later ``--resume`` cannot mix the two runs. ``config_file`` is the YAML file ``cfg``
    was read from: when it is the run directory's own ``config.yaml`` (a config written into the
    run directory before the first run) that file is no sign of an earlier run.
    """
    if cfg.trainer.committee > 1:
        return train_committee(cfg, resume=resume, callbacks=callbacks, overwrite=overwrite)
    from physnet.train.runner import (
        best_checkpoint,
        guard_run_dir,
        last_checkpoint,
        make_trainer,
        resume_from,
        start_run,
    )
    from physnet.train.tasks import PotentialTask

    run_dir = Path(cfg.run_dir)
    guard_run_dir(run_dir, resume, overwrite, RUN_RESULTS, config_file)
    share = start_run(cfg.trainer)
    started = time.perf_counter()
    potential, dataset, split = prepare(cfg, run_dir, resume)
    if _rank() == 0:
        _write_run_files(cfg, run_dir, potential, split, resume)
    _say(
        f"data: {len(dataset)} frames from {cfg.data.path} ({cfg.data.energy_unit}, {cfg.data.length_unit}); "
        f"split train/val/test = {len(split['train'])}/{len(split['val'])}/{len(split.get('test', []))}; "
        f"references {dict(zip(potential.species, potential.atom_refs.tolist(), strict=True))}, "
        f"scale {float(potential.energy_scale):.4g}, shift {float(potential.energy_shift):.4g} "
        f"({time.perf_counter() - started:.1f} s)"
    )
    d, t = cfg.data, cfg.trainer
    train_idx = split["train"]
    if t.bootstrap:  # a committee member's resample of the train split (same seed -> same resample)
        train_idx = np.random.default_rng(t.seed).choice(train_idx, size=len(train_idx), replace=True)
        _say(f"bootstrap resample (seed {t.seed}): {len(np.unique(train_idx))} distinct train frames")
    train_loader = make_loader(
        dataset, train_idx, d.batch_size, shuffle=True, num_workers=d.num_workers, seed=d.seed
    )
    val_loader = make_loader(
        dataset, split["val"], d.eval_batch_size, shuffle=False, num_workers=d.num_workers
    )
    # prepare() checked species, dtype and cells of every frame: steps skip the per-batch check
    task = PotentialTask(potential, cfg.task, run_config=cfg.to_dict(), checked_data=True)

    best = best_checkpoint(run_dir, "val/loss", auto_insert_metric_name=False)
    trainer = make_trainer(
        t,
        run_dir,
        [best, last_checkpoint(t, run_dir), *callbacks],
        ema_decay=cfg.task.ema_decay,
        resume=resume,
        log_every_n_steps=max(1, min(t.log_every_n_steps, len(train_loader))),
        inference_mode=False,  # validation needs autograd for forces
    )
    trainer.fit(task, train_loader, val_loader, ckpt_path=resume_from(run_dir, resume))
    if trainer.global_rank != 0:
        return run_dir
    # After fit the EMA callback has swapped the averaged weights into the model.
    task.potential.save(run_dir / "potential.pt")
    report: dict[str, Any] = {
        "epochs": trainer.current_epoch,
        "optimizer_steps": trainer.global_step,
        "wall_time_s": time.perf_counter() - started,
    }
    # Lightning's teardown moved the model to the CPU: evaluate where training ran
    pot = task.potential.to(trainer.strategy.root_device).eval()
    _report_run(cfg, run_dir, pot, dataset, split, report)
    share.report("train")
    return run_dir


def _write_run_files(
    cfg: RunConfig, run_dir: Path, potential: Potential, split: dict[str, np.ndarray], resume: bool
) -> None:
    """``config.yaml``, ``split.json`` and, for a fine-tuning run, ``init_from.json`` (rank 0)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(cfg.to_dict(), sort_keys=False, allow_unicode=True)
    atomic_write(run_dir / "config.yaml", lambda tmp: Path(tmp).write_text(text))
    save_split(split, run_dir / "split.json")
    tune = split_model_config(cfg.model)[1]
    if tune["init_from"] and not resume:
        from physnet.train.finetune import file_record

        n_frozen = sum(p.numel() for p in potential.parameters() if not p.requires_grad)
        record = file_record(tune["init_from"], tune, {"frozen_parameters": n_frozen})
        (run_dir / "init_from.json").write_text(record)


def _report_run(
    cfg: RunConfig,
    run_dir: Path,
    pot: Potential,
    dataset: GraphDataset,
    split: dict[str, np.ndarray],
    report: dict[str, Any],
) -> None:
    """Evaluate ``pot`` on the validation and test splits into ``report``; write
    ``test_metrics.json``, the parity and learning-curve plots, and print the summary."""
    from physnet.train.plots import plot_learning_curves, plot_parity

    d = cfg.data
    for stage in ("val", "test"):
        if len(split.get(stage, [])) > 0:
            pred = predict(pot, dataset, split[stage], d.eval_batch_size)
            report[stage] = error_table(pred)
            if stage == "test" or len(split.get("test", [])) == 0:
                plot_parity(pred, run_dir / f"parity_{stage}.png", d.energy_unit, d.length_unit, title=stage)
    text = json.dumps(report, indent=2)
    atomic_write(run_dir / "test_metrics.json", lambda tmp: Path(tmp).write_text(text))
    plot_learning_curves(run_dir / "logs", run_dir / "learning_curves.png", d.energy_unit, d.length_unit)
    _say(_summary(report, d.energy_unit, d.length_unit))
    _say(f"run directory: {run_dir} (potential.pt, checkpoints/, logs/, PNGs)")


def train_committee(
    cfg: RunConfig, resume: bool = False, callbacks: Sequence[Any] = (), overwrite: bool = False
) -> Path:
    """Train ``cfg.trainer.committee`` members into ``run_dir/member_<k>`` (seed ``trainer.seed + k``,
    one split for all; with ``trainer.bootstrap`` each member on its own resample of the train
    split), write ``committee.json`` (the file :class:`physnet.committee.Committee` and
    :class:`physnet.Calculator` read) and evaluate the committee on the test split
    (``committee_metrics.json``, ``committee_calibration.png``). With ``resume``, finished members
    are kept, a member with checkpoints is resumed and the others are trained."""
    import copy

    from physnet.committee import COMMITTEE_FILE

    root = check_writable(cfg.run_dir, "run_dir")
    k_members = cfg.trainer.committee
    if not resume and (root / COMMITTEE_FILE).exists() and not overwrite:
        raise FileExistsError(f"{root} already holds a committee; choose another run_dir or pass --overwrite")
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False, allow_unicode=True))
    members, seeds = [], []
    for k in range(k_members):
        member = copy.deepcopy(cfg)
        member.run_dir = str(root / f"member_{k}")
        member.trainer.committee = 1
        member.trainer.seed = cfg.trainer.seed + k
        seeds.append(member.trainer.seed)
        done = (Path(member.run_dir) / "potential.pt").is_file()
        started = (Path(member.run_dir) / "checkpoints" / "last.ckpt").is_file()
        _say(f"committee member {k + 1}/{k_members} (seed {member.trainer.seed}) -> {member.run_dir}")
        if resume and done:
            _say("  already trained")
        else:
            train(member, resume=resume and started, callbacks=callbacks, overwrite=overwrite)
        members.append(f"member_{k}/potential.pt")
    if _rank() != 0:
        return root
    record = {"members": members, "seeds": seeds, "bootstrap": cfg.trainer.bootstrap}
    (root / COMMITTEE_FILE).write_text(json.dumps(record, indent=2))
    first = copy.deepcopy(cfg)
    first.run_dir, first.trainer.committee = str(root / "member_0"), 1
    _, dataset, split = prepare(first, root / "member_0", resume=True)
    stage = "test" if len(split.get("test", [])) else "val"
    report = evaluate_committee([root / m for m in members], dataset, split[stage], cfg.data.eval_batch_size)
    report["stage"] = stage
    (root / "committee_metrics.json").write_text(json.dumps(report, indent=2))
    plot_committee_calibration(
        report, root / "committee_calibration.png", cfg.data.energy_unit, cfg.data.length_unit
    )
    e, l = cfg.data.energy_unit, cfg.data.length_unit
    _say(
        f"committee of {k_members} on the {stage} split ({len(split[stage])} frames): force MAE of the mean "
        f"{report['mean']['forces_mae']:.4g} {e}/{l}, members "
        + ", ".join(f"{m['forces_mae']:.4g}" for m in report["members"])
        + f"; Spearman rank correlation of the frame's largest per-atom force deviation with its force "
        f"error {report['spearman_deviation_error']:.3f}"
    )
    _say(f"committee: {root / COMMITTEE_FILE} (physnet.Calculator('{root}') evaluates it)")
    return root


def evaluate_committee(
    paths: Sequence[str | os.PathLike], dataset: GraphDataset, indices: np.ndarray, batch_size: int = 50
) -> dict[str, Any]:
    """Errors of each member and of the committee mean on ``indices``, and per frame the largest
    per-atom force deviation (:mod:`physnet.committee`) next to the mean's force MAE, with their
    Spearman rank correlation."""
    from scipy.stats import spearmanr

    preds = [predict(Potential.load(p), dataset, indices, batch_size) for p in paths]
    mean = dict(preds[0])
    for key in ("energy_pred", "forces_pred", "stress_pred"):
        if key in mean:
            mean[key] = np.mean([p[key] for p in preds], axis=0)
    report: dict[str, Any] = {"members": [error_table(p) for p in preds], "mean": error_table(mean)}
    if "forces" in mean:
        forces = np.stack([p["forces_pred"] for p in preds])  # [K, n_atoms_total, 3]
        dev = np.sqrt(((forces - forces.mean(0)) ** 2).sum(-1).mean(0))  # [n_atoms_total]
        err = np.abs(mean["forces_pred"] - mean["forces"]).mean(-1)  # [n_atoms_total]
        bounds = np.cumsum(mean["n_atoms"])[:-1]
        frame_dev = [float(d.max()) for d in np.split(dev, bounds)]
        frame_err = [float(x.mean()) for x in np.split(err, bounds)]
        report["frame_max_force_deviation"] = frame_dev
        report["frame_force_mae"] = frame_err
        report["spearman_deviation_error"] = float(spearmanr(frame_dev, frame_err).statistic)
    return report


def plot_committee_calibration(report: dict[str, Any], path: Path, e_unit: str, l_unit: str) -> Path | None:
    """Scatter of each frame's largest per-atom force deviation against its force MAE."""
    if "frame_force_mae" not in report:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.scatter(report["frame_max_force_deviation"], report["frame_force_mae"], s=6, alpha=0.5)
    ax.set_xlabel(f"largest per-atom force deviation ({e_unit}/{l_unit})")
    ax.set_ylabel(f"force MAE of the committee mean ({e_unit}/{l_unit})")
    ax.set_title(
        f"{len(report['members'])} members, {len(report['frame_force_mae'])} frames: "
        f"Spearman {report['spearman_deviation_error']:.2f}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _summary(report: dict[str, Any], e_unit: str, l_unit: str) -> str:
    lines = [
        f"trained {report['epochs']} epochs, {report['optimizer_steps']} optimizer steps in "
        f"{report['wall_time_s']:.0f} s"
    ]
    for stage in ("val", "test"):
        if stage in report:
            r = report[stage]
            line = f"{stage}:"
            if "energy_mae" in r:
                line += (
                    f" energy MAE {r['energy_mae']:.4g} {e_unit} ({r['energy_per_atom_mae']:.4g} per atom),"
                )
            if "forces_mae" in r:
                line += f" force MAE {r['forces_mae']:.4g} {e_unit}/{l_unit} (RMSE {r['forces_rmse']:.4g})"
            if "stress_mae" in r:
                line += f", stress MAE {r['stress_mae']:.4g} {e_unit}/{l_unit}^3"
            lines.append(line)
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use the `physnet train` command")
