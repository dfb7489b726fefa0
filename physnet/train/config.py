"""Run configuration: dataclasses with defaults, YAML files and dotted overrides.

A config file is YAML with the sections below; any field can be overridden on
the command line as ``section.field=value`` (the value is parsed as YAML, so
``model.n_features=128`` is an int and ``trainer.devices=[0,1]`` a list).
``physnet train --help`` prints every field with its default.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from physnet.errors import UnknownKeyError, UserError, close_match

__all__ = [
    "DataConfig",
    "TaskConfig",
    "TrainerConfig",
    "RunConfig",
    "GNSDataConfig",
    "GNSTaskConfig",
    "GNSRunConfig",
    "DynamicsDataConfig",
    "DynamicsTaskConfig",
    "DynamicsRunConfig",
    "JOBS",
    "job_of",
    "load_config",
    "load_gns_config",
    "load_dynamics_config",
    "describe",
    "apply_tf32",
]


@dataclass
class DataConfig:
    """Where the data is and what it means."""

    path: str = ""  # extxyz / ASE .db / MD17 or rMD17 .npz, or an embedded set's name
    energy_unit: str = ""  # unit of the file's energies, e.g. eV or kcal/mol (required)
    length_unit: str = ""  # unit of the file's positions, e.g. Å or Bohr (required)
    train: float = 0.8  # fraction in (0, 1] or whole count (> 1) of frames for training
    val: float = 0.1  # fraction or count for validation
    test: float | None = None  # fraction or count for testing; null = the rest
    split_file: str = ""  # JSON with train/val/test index lists; overrides the fractions
    seed: int = 0  # seed of the random split
    blocks: int = 0  # > 0: split whole time-contiguous blocks of frames (correlated MD data)
    numbers: Any = None  # atom / bead types of a positions-only .npy file, e.g. [6, 7, 6, 6, 7]
    forces_path: str = ""  # .npy forces matching a positions .npy in data.path
    batch_size: int = 10  # graphs per training batch
    eval_batch_size: int = 50  # graphs per validation / test batch
    num_workers: int = 0  # DataLoader workers (graphs are pre-built, 0 is usually fastest)
    stress: bool = False  # train on stress too (periodic data with stress only)
    drop_nonfinite: bool = False  # drop frames with non-finite labels (counted) instead of refusing the file
    keys: Any = None  # ASE .db property names when not energy/forces/stress, e.g. {energy: E, forces: F}


@dataclass
class TaskConfig:
    """Loss, optimiser and schedule."""

    energy_weight: float = 1.0  # weight of the per-atom energy MSE (normalised by scale^2)
    forces_weight: float = 10.0  # weight of the force-component MSE (normalised by scale^2)
    stress_weight: float = 0.0  # weight of the stress MSE; needs data.stress
    lr: float = 1e-3  # AdamW learning rate
    weight_decay: float = 0.0  # AdamW weight decay
    warmup_steps: int = 200  # linear LR warm-up from lr/100 over this many optimiser steps
    plateau_factor: float = 0.8  # ReduceLROnPlateau factor on the validation loss
    plateau_patience: int = 10  # epochs without improvement before reducing the LR
    min_lr: float = 1e-6  # lower bound of the LR
    ema_decay: float = 0.99  # EMA of weights used for validation and checkpoints; 0 disables
    fit_references: bool = True  # per-element reference energies by least squares on the train split
    fit_scale: bool = True  # energy scale = force RMS on the train split
    lipschitz: float = 0.0  # > 0: bound every weight matrix's spectral norm after each step (CGnet)


@dataclass
class TrainerConfig:
    """Passed through to Lightning's Trainer (plus checkpointing)."""

    max_epochs: int = 1000
    max_steps: int = -1  # -1: no limit
    max_time_minutes: float = 0.0  # wall-clock budget; 0 disables
    accelerator: str = "auto"  # cpu, gpu, auto
    devices: Any = "auto"  # number or list of devices
    strategy: str = "auto"  # e.g. ddp
    num_nodes: int = 1
    dtype: str = "float32"  # float32 or float64
    tf32: bool = False  # float32 matmuls/convolutions on NVIDIA tensor cores in TF32 (10-bit mantissa)
    gradient_clip_val: float = 10.0  # clip the gradient norm; 0 disables
    checkpoint_every_n_steps: int = 500  # write last.ckpt this often (and at each epoch end)
    log_every_n_steps: int = 20
    check_val_every_n_epoch: int = 1
    seed: int = 0
    progress_bar: bool = True
    threads: int = 0  # torch intra-op threads; 0: physnet.runtime.auto_threads (1 on a busy or 2-core CPU)
    committee: int = 1  # > 1: train this many members (seeds seed, seed+1, ...) into run_dir/member_<k>
    bootstrap: bool = False  # train on a bootstrap resample (with replacement, by seed) of the train split


@dataclass
class RunConfig:
    """A whole training run."""

    run_dir: str = "runs/run"  # where config, split, logs, checkpoints and plots go
    model: dict[str, Any] = field(default_factory=lambda: {"name": "schnet"})  # name + hyper-parameters
    # prior energy terms: {term: {name: <physnet.nn.priors.PRIORS key>, **kwargs}}, fitted on the train split
    priors: dict[str, Any] = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_SECTIONS = {"data": DataConfig, "task": TaskConfig, "trainer": TrainerConfig}


def _sections(raw: dict[str, Any], sections: dict[str, type], top: list[str]) -> dict[str, Any]:
    """The config dataclasses of ``sections`` from a raw mapping; unknown sections or keys are an
    :class:`UnknownKeyError` naming the allowed ones (``top`` are the other top-level keys)."""
    allowed_top = [*top, *sections]
    unknown = sorted(set(raw) - set(allowed_top))
    if unknown:
        raise UnknownKeyError(
            f"unknown config section(s) {unknown}{close_match(unknown[0], allowed_top)}; "
            f"allowed: {', '.join(allowed_top)}"
        )
    kwargs: dict[str, Any] = {}
    for name, cls in sections.items():
        section = raw.get(name) or {}
        if not isinstance(section, dict):
            raise ValueError(f"config section {name!r} must be a mapping, got {section!r}")
        allowed = {f.name for f in dataclasses.fields(cls)}
        bad = sorted(set(section) - allowed)
        if bad:
            raise UnknownKeyError(
                f"unknown key(s) {bad} in section {name!r}{close_match(bad[0], allowed)}; "
                f"allowed: {sorted(allowed)}"
            )
        kwargs[name] = cls(**{k: _coerce(cls, name, k, v) for k, v in section.items()})
    return kwargs


def _from_dict(raw: dict[str, Any]) -> RunConfig:
    _check_job(raw, "potential")
    raw = {k: v for k, v in raw.items() if k != "job"}
    kwargs = _sections(raw, _SECTIONS, ["run_dir", "model", "priors"])
    priors = raw.get("priors") or {}
    if not isinstance(priors, dict) or not all(isinstance(v, dict) and "name" in v for v in priors.values()):
        raise ValueError(
            "config section 'priors' must map term names to mappings with a 'name', e.g. "
            "priors: {bonds: {name: harmonic_bonds, temperature: 300}}"
        )
    model = {"name": "schnet", **(raw.get("model") or {})}
    if kwargs["trainer"].committee < 1:
        raise UserError(
            f"trainer.committee={kwargs['trainer'].committee}: the number of potentials to train must be "
            ">= 1 (1: one potential; K > 1: a committee of K)"
        )
    return RunConfig(
        run_dir=str(raw.get("run_dir", RunConfig.run_dir)), model=model, priors=dict(priors), **kwargs
    )


def _coerce(cls: type, section: str, key: str, value: Any) -> Any:
    """Convert ``value`` to the field's declared type (YAML reads ``5e-4`` as a string)."""
    hint = typing.get_type_hints(cls)[key]
    args = typing.get_args(hint)
    if value is None and type(None) in args:
        return None
    target = next((a for a in (args or (hint,)) if a is not type(None)), hint)
    if value is None and target is str:  # "key=" on the command line
        return ""
    if target is Any or isinstance(value, target if isinstance(target, type) else object):
        if target is float and isinstance(value, bool):
            raise ValueError(f"{section}.{key} must be a number, got {value!r}")
        return value
    try:
        if target is bool:
            if isinstance(value, str) and value.lower() in {"true", "false", "yes", "no", "1", "0"}:
                return value.lower() in {"true", "yes", "1"}
            raise ValueError
        if target is int and isinstance(value, float) and not value.is_integer():
            raise ValueError
        return target(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"{section}.{key} must be {getattr(target, '__name__', target)}, got {value!r}"
        ) from None


def _set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = raw
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise ValueError(f"override {dotted!r}: {k!r} is not a section")
    node[keys[-1]] = value


def read_raw(path: str | os.PathLike | None, overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """The YAML mapping of ``path`` (empty without one) with ``section.key=value`` overrides applied."""
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if p.is_dir():
            raise UserError(f"config file {p} is a directory; give a YAML file (examples/configs/ has some)")
        if not p.is_file():
            raise FileNotFoundError(f"config file {p} does not exist")
        try:
            raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError as err:
            raise UserError(
                f"config file {p} is not UTF-8 text (byte {err.object[err.start]:#04x} at offset "
                f"{err.start}); save it as UTF-8"
            ) from None
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f", line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise UserError(
                f"config file {p}{where}: YAML syntax error ({problem}); check the indentation, "
                "colons and brackets there"
            ) from None
        if not isinstance(raw, dict):
            raise UserError(f"config file {p} must hold a YAML mapping (section: {{key: value}})")
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like section.key=value")
        key, value = item.split("=", 1)
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            raise UserError(
                f"override {item!r}: the value is not valid YAML; quote it, e.g. {key}='\"{value}\"'"
            ) from None
        _set_dotted(raw, key.strip(), parsed)
    return raw


def load_config(path: str | os.PathLike | None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Read a YAML config (or start from defaults) and apply ``section.key=value`` overrides."""
    raw = read_raw(path, overrides)
    return _from_dict(raw)


@dataclass
class GNSDataConfig:
    """Trajectory files (``scripts/generate_mpm_water.py``) and batching."""

    train: str = ""  # .npz of training trajectories (required)
    valid: str = ""  # .npz of validation trajectories ("" = no validation)
    test: str = ""  # .npz of held-out trajectories evaluated after training ("" = none)
    batch_size: int = 2  # windows per optimiser step (paper: 2)
    val_stride: int = 10  # validate on every n-th window of the validation trajectories
    eval_trajectories: int = 0  # test trajectories to roll out after training (0 = all)
    # validation trajectories rolled out in full at every validation (0 = none); with > 0 the
    # saved gns.pt is the validated model with the best selection score, not the last one
    val_rollouts: int = 0


@dataclass
class GNSTaskConfig:
    """Loss, noise and optimiser (paper Sec. 4) and the options of :class:`GNSTask`."""

    noise_std: float = 6.7e-4  # random-walk noise on the last input position, length unit (paper: 6.7e-4)
    lr: float = 1e-4  # initial Adam learning rate (paper: 1e-4)
    min_lr: float = 1e-6  # final learning rate (paper: 1e-6)
    lr_decay_steps: float = 5e6  # lr - min_lr shrinks 10x per this many steps (paper: 5e6)
    ema_decay: float = 0.0  # EMA of weights for validation and the saved model; 0 disables
    val_every_n_steps: int = 500  # validate every this many optimiser steps
    pushforward_unroll: int = 0  # largest number of steps a batch is unrolled by the model (0 = off)
    pushforward_prob: float = 0.5  # probability that a batch is unrolled
    pushforward_start_step: int = 0  # optimiser steps before the first unroll
    wall_excursion_prob: float = 0.0  # probability that a particle near a wall is moved behind it (0 = off)
    wall_excursion_depth: float = 0.0  # largest depth behind the wall, length unit


@dataclass
class GNSRunConfig:
    """A GNS training run: ``physnet train CONFIG.yaml`` with ``job: gns`` (or ``physnet gns-train``)."""

    job: str = "gns"
    run_dir: str = "runs/gns"
    model: dict[str, Any] = field(default_factory=lambda: {"name": "gns"})  # name + GNS keyword arguments
    data: GNSDataConfig = field(default_factory=GNSDataConfig)
    task: GNSTaskConfig = field(default_factory=GNSTaskConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_GNS_SECTIONS = {"data": GNSDataConfig, "task": GNSTaskConfig, "trainer": TrainerConfig}


def load_gns_config(
    path: str | os.PathLike | None, overrides: list[str] | tuple[str, ...] = ()
) -> GNSRunConfig:
    """Read a YAML config (or defaults) and apply ``section.key=value`` overrides (as ``physnet train``)."""
    raw = read_raw(path, overrides)
    _check_job(raw, "gns")
    kwargs = _sections(raw, _GNS_SECTIONS, ["job", "run_dir", "model"])
    model = {"name": "gns", **(raw.get("model") or {})}
    return GNSRunConfig(run_dir=str(raw.get("run_dir", GNSRunConfig.run_dir)), model=model, **kwargs)


@dataclass
class DynamicsDataConfig:
    """N-body systems (the ``.npz`` format of Satorras et al.'s generator) and batching."""

    path: str = ""  # .npz with loc_/vel_/charges_ arrays of the train, valid and test splits (required)
    n_train: int = 3000  # training systems (paper: 3000); 0 = all
    frame_in: int = 30  # input frame: positions and velocities (paper: 30)
    frame_out: int = 40  # target frame (paper: 40, 1000 integration steps later)
    batch_size: int = 100  # systems per optimiser step (paper: 100)
    eval_batch_size: int = 500  # systems per validation / test batch
    test: bool = True  # evaluate the test split after training (false: exploratory runs leave it unseen)


@dataclass
class DynamicsTaskConfig:
    """Optimiser, schedule and weight averaging of :class:`physnet.train.dynamics.DynamicsTask`."""

    lr: float = 5e-4  # Adam learning rate (paper: 5e-4)
    weight_decay: float = 1e-12  # authors' code: 1e-12
    optimizer: str = "adam"  # adam | adamw (decoupled weight decay)
    schedule: str = "constant"  # constant | cosine (over trainer.max_epochs) | plateau (on val/mse)
    warmup_epochs: int = 0  # linear learning-rate warm-up over this many epochs
    plateau_patience: int = 10  # validations without a new best before the lr drops (schedule plateau)
    plateau_factor: float = 0.5  # lr factor of schedule plateau
    # EMA of the weights, decay min(ema_decay, (1 + k) / (10 + k)) at optimiser step k, used for
    # validation, model selection and test; 0 disables
    ema_decay: float = 0.0


@dataclass
class DynamicsRunConfig:
    """An N-body dynamics run: ``physnet train CONFIG.yaml`` with ``job: dynamics``."""

    job: str = "dynamics"
    run_dir: str = "runs/nbody"
    # name (physnet.models.available_dynamics()) + the model's keyword arguments
    model: dict[str, Any] = field(default_factory=lambda: {"name": "egnn"})
    data: DynamicsDataConfig = field(default_factory=DynamicsDataConfig)
    task: DynamicsTaskConfig = field(default_factory=DynamicsTaskConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_DYNAMICS_SECTIONS = {"data": DynamicsDataConfig, "task": DynamicsTaskConfig, "trainer": TrainerConfig}


def load_dynamics_config(
    path: str | os.PathLike | None, overrides: list[str] | tuple[str, ...] = ()
) -> DynamicsRunConfig:
    """Read a YAML config (or defaults) of ``job: dynamics`` and apply ``section.key=value`` overrides."""
    raw = read_raw(path, overrides)
    _check_job(raw, "dynamics")
    kwargs = _sections(raw, _DYNAMICS_SECTIONS, ["job", "run_dir", "model"])
    model = {"name": "egnn", **(raw.get("model") or {})}
    return DynamicsRunConfig(
        run_dir=str(raw.get("run_dir", DynamicsRunConfig.run_dir)), model=model, **kwargs
    )


# what ``physnet train`` trains, chosen by the config's top-level ``job`` key
JOBS = ("potential", "gns", "dynamics")


def job_of(raw: dict[str, Any]) -> str:
    """The job of a raw config: its ``job`` key; without one ``gns`` for ``model.name: gns``
    (configs written before the key existed) and ``potential`` otherwise."""
    job = raw.get("job")
    if job is None:
        model = raw.get("model")
        return "gns" if isinstance(model, dict) and model.get("name") == "gns" else "potential"
    if job not in JOBS:
        raise UserError(f"job must be one of {', '.join(JOBS)}, got {job!r}{close_match(str(job), JOBS)}")
    return str(job)


def _check_job(raw: dict[str, Any], expected: str) -> None:
    """Refuse a config whose ``job`` key names another job than the loader's."""
    if raw.get("job") is not None and job_of(raw) != expected:
        raise UserError(
            f"this config is for job {raw['job']!r}, not {expected!r}: train it with physnet train "
            "(which picks the job from the config's job key)"
        )


def apply_tf32(enabled: bool) -> None:
    """Allow (or forbid) TF32 for float32 matrix products and cuDNN convolutions on CUDA.

    TF32 (NVIDIA Ampere and later) rounds the inputs of float32 products to a 10-bit mantissa
    (relative error of order 1e-4 to 1e-3 instead of 1e-7) in exchange for tensor-core speed.
    physnet forbids it by default (``trainer.tf32: false``), including for cuDNN, where torch allows it
    by default; forces are derivatives of a learned energy and a training run should not change
    precision with the card it lands on. Sets the process-wide flags that
    :func:`physnet.testing.precise` also uses (torch's legacy API: mixing it with the newer
    ``fp32_precision`` settings is an error in torch >= 2.9). No effect on CPU.
    """
    import torch

    torch.backends.cuda.matmul.allow_tf32 = bool(enabled)
    torch.backends.cudnn.allow_tf32 = bool(enabled)


# keys an override may change on ``physnet train --resume``: how long and where the run goes on,
# and what it logs. Everything else (model, priors, data and split, loss, optimiser, dtype, seed)
# is fixed by the checkpoint and the saved split; changing it would be ignored or mix two runs.
RESUMABLE = frozenset(
    {
        "trainer.max_epochs",
        "trainer.max_steps",
        "trainer.max_time_minutes",
        "trainer.accelerator",
        "trainer.devices",
        "trainer.strategy",
        "trainer.num_nodes",
        "trainer.gradient_clip_val",
        "trainer.checkpoint_every_n_steps",
        "trainer.log_every_n_steps",
        "trainer.check_val_every_n_epoch",
        "trainer.progress_bar",
        "trainer.threads",
        "trainer.tf32",
        "data.eval_batch_size",
        "data.num_workers",
    }
)


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and key in ("data", "task", "trainer", "model", "priors"):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_resume_changes(saved: RunConfig, resumed: RunConfig) -> list[str]:
    """The ``section.key`` names whose value differs between a run's saved config and the
    config it is resumed with; raises ``ValueError`` naming any that cannot change on resume
    (see :data:`RESUMABLE`)."""
    old, new = _flatten(saved.to_dict()), _flatten(resumed.to_dict())
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    fixed = [k for k in changed if k not in RESUMABLE]
    if fixed:
        was = ", ".join(f"{k}={old.get(k)!r} (asked {new.get(k)!r})" for k in fixed)
        raise ValueError(
            f"cannot change {was} when resuming: the checkpoint and split fix it; "
            f"on --resume only {', '.join(sorted(RESUMABLE))} may change (start a new run_dir otherwise)"
        )
    return changed


def _field_lines(sections: dict[str, type]) -> list[str]:
    lines = []
    for name, cls in sections.items():
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            lines.append(f"  {name}.{f.name}: {default!r}")
    return lines


def describe() -> str:
    """Every config field of every job with its default, and the model names, for ``--help``."""
    from physnet.data import embedded
    from physnet.models import builtin

    lines = [
        "The config's top-level key job picks what is trained: potential (default), gns, dynamics.",
        "",
        "job: potential -- config fields (YAML sections; override with section.key=value):",
        "  run_dir: runs/run",
        f"  model.name: schnet   ({' | '.join(builtin.ENERGY_MODELS)}; plus the model's own keyword "
        "arguments, e.g. model.n_features=128)",
        "  model.init_from: ''   (fine-tune a potential.pt / .ckpt; with model.references: refit|keep, "
        "model.scale: keep|refit, model.freeze: [embedding, ...], model.add_species: false; "
        "see docs/finetune_and_committees.md)",
        "  priors: {}   (term: {name: zbl | harmonic_bonds | harmonic_angles | bead_repulsion, **kwargs})",
        *_field_lines(_SECTIONS),
        "",
        "job: gns -- the GNS learned simulator (also physnet gns-train):",
        f"  run_dir: {GNSRunConfig.run_dir}",
        "  model.name: gns   (plus the GNS's keyword arguments, e.g. model.walls=features)",
        *(line for line in _field_lines(_GNS_SECTIONS) if not line.startswith("  trainer.")),
        "  trainer.*: as for job: potential",
        "",
        "job: dynamics -- N-body dynamics models (EGNN paper, Sec. 5.1):",
        f"  run_dir: {DynamicsRunConfig.run_dir}",
        f"  model.name: egnn   ({' | '.join(builtin.DYNAMICS_MODELS)}; plus the model's keyword "
        "arguments, e.g. model.n_layers=6)",
        *(line for line in _field_lines(_DYNAMICS_SECTIONS) if not line.startswith("  trainer.")),
        "  trainer.*: as for job: potential",
        "",
        f"Embedded data sets (data.path=NAME): {', '.join(embedded.available()) or 'none found'}",
    ]
    return "\n".join(lines)
