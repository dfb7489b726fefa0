"""Fine-tuning: start a training run from a trained potential or checkpoint.

``physnet train CONFIG model.init_from=RUN/potential.pt`` builds the model with the trained
model's name and hyper-parameters, loads its weights (model and priors) and trains on the new
data. The ``model`` section takes these keys besides the model's own arguments:

- ``init_from``: a ``potential.pt`` (:meth:`physnet.Potential.save`) or a ``physnet train``
  Lightning checkpoint (``.ckpt``);
- ``references``: ``refit`` (default) fits the per-element reference energies (and the
  per-atom shift) to what the trained model leaves unexplained on the new training split, so a
  new level of theory with another zero of energy costs nothing; ``keep`` keeps the trained
  ones (converted to the data's energy unit);
- ``scale``: ``keep`` (default) keeps the trained energy scale (converted to the data's energy
  unit), so the network's outputs mean what they meant; ``refit`` sets it to the new training
  split's force RMS, as a run from scratch does;
- ``freeze``: names of the model's parts whose weights stay fixed, e.g.
  ``[embedding, interactions]`` for SchNet (top-level submodules; dotted paths reach deeper);
- ``add_species``: ``true`` adds elements of the new data that the trained model does not know
  (their embedding rows or per-element networks start untrained, their references at 0 and
  then refitted); without it such elements are an error.

Hyper-parameters the config gives must equal the trained model's; the others are taken from
it. The run directory's ``config.yaml`` then holds the full model, and ``init_from.json``
records the file started from (path, SHA-256, what was kept, refitted and frozen).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = ["FINETUNE_KEYS", "split_model_config", "read_init", "resolve_model", "load_weights", "freeze"]

# keys of the config's model section that are not arguments of the model
FINETUNE_KEYS = ("init_from", "references", "scale", "freeze", "add_species")


def split_model_config(model: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model arguments without ``name``, fine-tuning options with defaults filled in) of the
    config's ``model`` section; raises ``ValueError`` for a bad option."""
    hparams = {k: v for k, v in model.items() if k != "name" and k not in FINETUNE_KEYS}
    _check_option_typos(model.get("name", "schnet"), hparams)
    opts = {
        "init_from": model.get("init_from") or "",
        "references": model.get("references", "refit"),
        "scale": model.get("scale", "keep"),
        "freeze": model.get("freeze") or [],
        "add_species": bool(model.get("add_species", False)),
    }
    for key in ("references", "scale"):
        if opts[key] not in ("keep", "refit"):
            raise ValueError(f"model.{key} must be keep or refit, got {opts[key]!r}")
    if isinstance(opts["freeze"], str):
        opts["freeze"] = [opts["freeze"]]
    given = [k for k in FINETUNE_KEYS[1:] if k in model]
    if given and not opts["init_from"]:
        raise ValueError(
            f"model.{given[0]} only applies when fine-tuning; set model.init_from=POTENTIAL_OR_CHECKPOINT "
            f"or remove model.{given[0]}"
        )
    return hparams, opts


def _check_option_typos(name: str, hparams: dict[str, Any]) -> None:
    """Refuse a key of the model section that is no argument of the model but close to a fine-tuning
    option (``model.init_form``): the model's own error would list only its arguments."""
    import inspect

    from physnet.errors import UnknownKeyError, close_match
    from physnet.models.registry import ENERGY_MODELS

    try:
        known = inspect.signature(ENERGY_MODELS.lookup(name)).parameters
    except ValueError:  # an unknown model name: reported when the model is built
        return
    for key in hparams:
        hint = close_match(key, FINETUNE_KEYS)
        if key not in known and hint:
            raise UnknownKeyError(
                f"model.{key} is neither an argument of model {name!r} nor a fine-tuning option{hint}; "
                f"fine-tuning options: {list(FINETUNE_KEYS)}"
            )


def read_init(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The potential config (:meth:`physnet.Potential.config`) and state dict of a
    ``potential.pt`` or ``physnet train`` checkpoint; ``ValueError`` for any other file."""
    from physnet.potential import CHECKPOINT_FORMAT

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(
            f"model.init_from: no file at {p}; give a potential.pt or a physnet checkpoint"
        )
    if p.suffix == ".pt2":
        raise ValueError(
            f"model.init_from: {p} is an exported .pt2 file (compiled, no trainable weights); "
            "fine-tune from the potential.pt or checkpoint it was exported from"
        )
    hint = "give a potential.pt written by physnet train or a checkpoints/*.ckpt of a physnet run"
    try:
        data = torch.load(p, map_location="cpu", weights_only=True)
    except Exception:  # not a torch file, or a pickle with foreign classes
        raise ValueError(
            f"model.init_from: {p} is not a physnet potential or checkpoint (torch.load cannot read it); "
            + hint
        ) from None
    if isinstance(data, dict) and isinstance(data.get("physnet"), dict):
        config = data["physnet"]
        state = {
            k[len("potential.") :]: v
            for k, v in data.get("state_dict", {}).items()
            if k.startswith("potential.")
        }
    elif isinstance(data, dict):
        config, state = data, data.get("state_dict", {})
    else:
        raise ValueError(f"model.init_from: {p} is not a physnet potential or checkpoint; {hint}")
    if config.get("format") != CHECKPOINT_FORMAT or not isinstance(config.get("model"), dict) or not state:
        raise ValueError(
            f"model.init_from: {p} is not a physnet potential or checkpoint "
            f"(format {config.get('format')!r}, expected {CHECKPOINT_FORMAT!r}); {hint}"
        )
    return config, state


def resolve_model(
    init_config: dict[str, Any], name: str, hparams: dict[str, Any], present: Sequence[int], add_species: bool
) -> tuple[dict[str, Any], list[int]]:
    """The model arguments of the fine-tuned model: the trained model's, checked against the
    ones the config gives (``ValueError`` listing every difference), and its species, extended
    by the data's unknown elements with ``add_species`` (``ValueError`` naming them without).

    Returns:
        (model arguments without ``name`` and ``species``, species as atomic numbers).
    """
    from ase.data import chemical_symbols

    from physnet.data.graph import atomic_number

    trained = dict(init_config["model"])
    trained_name = trained.pop("name")
    if name != trained_name:
        raise ValueError(
            f"model.init_from holds a {trained_name!r} model but the config asks for {name!r}; "
            f"set model.name={trained_name} (fine-tuning keeps the model family)"
        )
    trained_species = [atomic_number(s) for s in trained.pop("species")]
    diffs = []
    for key, value in hparams.items():
        if key == "species":
            continue
        if key not in trained:
            diffs.append(f"{key}={value!r} (the trained model has no such argument)")
        elif not _same_value(value, trained[key]):
            diffs.append(f"{key}={value!r} (trained: {trained[key]!r})")
    if diffs:
        raise ValueError(
            f"model.init_from: the config's model differs from the trained {trained_name}: "
            f"{'; '.join(diffs)}; remove these keys (the trained values are used) or train from scratch"
        )
    species = list(trained_species)
    asked = hparams.get("species")
    wanted = [atomic_number(s) for s in asked] if asked else []
    new = [z for z in dict.fromkeys([*wanted, *present]) if z not in trained_species]
    if new and not add_species:
        names = [chemical_symbols[z] for z in new]
        raise ValueError(
            f"model.init_from: element(s) {names} are not in the trained model's species "
            f"{[chemical_symbols[z] for z in trained_species]}; set model.add_species=true to add them "
            "(untrained embeddings), or remove those frames"
        )
    return trained, species + new


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return float(a) == float(b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def load_weights(
    potential: torch.nn.Module,
    state: dict[str, torch.Tensor],
    old_species: Sequence[int],
    energy_factor: float,
) -> list[str]:
    """Copy the trained ``state`` into ``potential`` (built with ``old_species`` extended by new
    elements at the end). Tensors indexed by species along dimension 0 (embeddings, references)
    get their old rows; parameters of new elements' own networks stay as built. The energy
    buffers (references, scale, shift) are multiplied by ``energy_factor`` (trained energy unit
    -> the data's). Returns the names of the entries left as built."""
    own = potential.state_dict()
    n_old, n_new = len(old_species), len(potential.model.species)
    left = []
    loaded = {}
    for key, value in own.items():
        if key not in state:
            left.append(key)
            continue
        old = state[key].to(value.dtype)
        if key in ("atom_refs", "energy_scale", "energy_shift"):
            old = old * energy_factor
        if old.shape == value.shape:
            loaded[key] = old
        elif (
            n_new > n_old
            and old.shape[0] == n_old
            and value.shape[0] == n_new
            and old.shape[1:] == value.shape[1:]
        ):
            grown = value.clone()
            grown[:n_old] = old
            loaded[key] = grown
            if key != "atom_refs":
                left.append(f"{key}[{n_old}:]")
        else:
            raise ValueError(
                f"model.init_from: weight {key} has shape {tuple(old.shape)} in the file but "
                f"{tuple(value.shape)} in the model; the file does not match its own hyper-parameters"
            )
    unexpected = sorted(set(state) - set(own))
    if unexpected:
        raise ValueError(
            f"model.init_from: the file has weights {unexpected[:5]} the rebuilt potential lacks "
            "(a prior or model part missing from the config?)"
        )
    potential.load_state_dict({**own, **loaded})
    return left


def freeze(model: torch.nn.Module, names: Sequence[str]) -> int:
    """Fix the weights of the model's parts ``names`` (top-level submodules or dotted paths);
    returns the number of frozen parameters. ``ValueError`` lists the parts there are."""
    count = 0
    for name in names:
        try:
            part = model.get_submodule(name)
        except AttributeError:
            parts = [n for n, m in model.named_children() if any(True for _ in m.parameters())]
            raise ValueError(
                f"model.freeze: the {type(model).__name__} model has no part {name!r}; "
                f"parts with weights: {parts}"
            ) from None
        for p in part.parameters():
            if p.requires_grad:
                p.requires_grad_(False)
                count += p.numel()
    return count


def file_record(path: str | Path, opts: dict[str, Any], extra: dict[str, Any]) -> str:
    """JSON text of ``init_from.json``: where a fine-tuning run started and how."""
    p = Path(path)
    digest = hashlib.sha256(p.read_bytes()).hexdigest()
    record = {
        "init_from": str(p),
        "resolved": str(p.resolve()),
        "sha256": digest,
        "references": opts["references"],
        "scale": opts["scale"],
        "freeze": list(opts["freeze"]),
        "add_species": opts["add_species"],
        **extra,
    }
    return json.dumps(record, indent=2)
