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
    "load_config",
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


def _from_dict(raw: dict[str, Any]) -> RunConfig:
    unknown = sorted(set(raw) - {"run_dir", "model", "priors", *_SECTIONS})
    if unknown:
        top = ["run_dir", "model", "priors", *_SECTIONS]
        raise UnknownKeyError(
            f"unknown config section(s) {unknown}{close_match(unknown[0], top)}; allowed: {', '.join(top)}"
        )
    priors = raw.get("priors") or {}
    if not isinstance(priors, dict) or not all(isinstance(v, dict) and "name" in v for v in priors.values()):
        raise ValueError(
            "config section 'priors' must map term names to mappings with a 'name', e.g. "
            "priors: {bonds: {name: harmonic_bonds, temperature: 300}}"
        )
    kwargs: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
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
    model = {"name": "schnet", **(raw.get("model") or {})}
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
        if not p.is_file():
            raise FileNotFoundError(f"config file {p} does not exist")
        try:
            raw = yaml.safe_load(p.read_text()) or {}
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


def describe() -> str:
    """Every config field with its default, for ``--help``."""
    lines = [
        "config fields (YAML sections; override with section.key=value):",
        "  run_dir: runs/run",
        "  model.name: schnet   (plus the model's own keyword arguments, e.g. model.n_features=128)",
        "  model.init_from: ''   (fine-tune a potential.pt / .ckpt; with model.references: refit|keep, "
        "model.scale: keep|refit, model.freeze: [embedding, ...], model.add_species: false; "
        "see docs/finetune_and_committees.md)",
        "  priors: {}   (term: {name: zbl | harmonic_bonds | harmonic_angles | bead_repulsion, **kwargs})",
    ]
    for name, cls in _SECTIONS.items():
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            lines.append(f"  {name}.{f.name}: {default!r}")
    return "\n".join(lines)
