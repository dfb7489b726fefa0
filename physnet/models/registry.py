"""Name -> builder registry: the public entry point every model joins.

>>> import physnet
>>> "schnet" in physnet.models.available()
True
>>> model = physnet.models.build("schnet", species=["H", "C", "O"], n_interactions=2)
>>> model.hparams["n_interactions"]
2
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch

from physnet.data.graph import SpeciesIndex
from physnet.errors import UnknownKeyError, UserError, close_match

__all__ = ["EnergyModel", "register", "build", "available"]


class EnergyModel(torch.nn.Module):
    """Base of every energy model.

    A subclass maps a graph to per-atom energies [n_atoms] (``per_atom = True``) or
    per-graph energies [n_graphs] (``per_atom = False``, e.g. CGnet), in the energy
    unit of its training data. It recomputes edge vectors from ``graph[POS]`` with
    :func:`physnet.data.edge_vectors` inside ``forward`` so that forces and stress
    follow by autograd in :class:`physnet.Potential`. It stores nothing on itself
    during ``forward``.

    Attributes:
        species: :class:`SpeciesIndex` mapping atomic numbers to indices.
        cutoff: neighbour cutoff the graphs must be built with (length unit).
        per_atom: whether ``forward`` returns [n_atoms] (True) or [n_graphs].
        hparams: the name and keyword arguments that rebuild the model with :func:`build`.
    """

    per_atom: bool = True

    def __init__(self, species: Sequence[int | str], cutoff: float) -> None:
        super().__init__()
        if cutoff <= 0:
            raise ValueError(f"cutoff must be > 0, got {cutoff}")
        self.species = SpeciesIndex(species)
        self.cutoff = float(cutoff)
        self.hparams: dict[str, Any] = {}

    @property
    def interaction_range(self) -> float:
        """How far an atom's energy reaches (length unit): atoms farther than this from atom i
        do not change its energy. ``cutoff`` for a strictly local model; T x ``cutoff`` after T
        message-passing layers. An engine that splits space (LAMMPS over MPI ranks) keeps ghost
        atoms out to this distance."""
        return self.cutoff

    def fit_statistics(self, graphs: Sequence[dict[str, torch.Tensor]]) -> None:
        """Set data-dependent buffers (e.g. feature means and widths) from training graphs.

        Called once by the training driver on the train split before training; the values
        must live in buffers so checkpoints carry them. The default does nothing.
        """

    def prepare_inference(self) -> None:
        """Precompute what depends on the weights only, for a frozen inference copy.

        Called by :meth:`physnet.Potential.frozen` (hence by :class:`physnet.Calculator`) after
        the copy is cast, put in eval mode and frozen. Whatever is precomputed must reproduce
        the model to the round-off of its dtype, must not enter the state dict, and must be
        discarded by ``train()``. The default does nothing; SchNet tabulates its filters.
        """


_REGISTRY: dict[str, Callable[..., EnergyModel]] = {}
# built-in names -> the module whose import registers them; imported on first look-up, so that
# building SchNet does not import e3nn (the SE(3)-Transformer's)
_BUILTIN: dict[str, str] = {
    "behler_parrinello": "physnet.models.behler_parrinello",
    "cgnet": "physnet.models.cgnet",
    "egnn": "physnet.models.egnn",
    "schnet": "physnet.models.schnet",
    "se3_transformer": "physnet.models.se3_transformer",
}
M = TypeVar("M", bound=Callable[..., Any])


def register(name: str) -> Callable[[M], M]:
    """Class decorator adding a model builder under ``name``."""

    def wrap(builder: M) -> M:
        taken = name in _REGISTRY or (name in _BUILTIN and builder.__module__ != _BUILTIN[name])
        if taken:
            raise ValueError(f"a model named {name!r} is already registered")
        _REGISTRY[name] = builder
        return builder

    return wrap


def available() -> list[str]:
    """Names of the registered models (built-in ones included, imported or not), sorted."""
    return sorted(set(_REGISTRY) | set(_BUILTIN))


def _lookup(name: str) -> Callable[..., EnergyModel]:
    """The builder registered under ``name``, importing a built-in model's module on first use."""
    if name not in _REGISTRY and name in _BUILTIN:
        importlib.import_module(_BUILTIN[name])
    if name not in _REGISTRY:
        raise UserError(f"unknown model {name!r}{close_match(name, available())}; available: {available()}")
    return _REGISTRY[name]


def build(name: str, species: Sequence[int | str], **hparams: Any) -> EnergyModel:
    """Build a registered model.

    Args:
        name: a name from :func:`available`.
        species: elements (symbols or atomic numbers) the model handles.
        **hparams: the model's keyword arguments; unknown ones are an error.

    Returns:
        the model, with ``model.hparams`` recording ``name``, ``species`` and every
        keyword argument (defaults filled in) so a checkpoint can rebuild it.
    """
    builder = _lookup(name)
    sig = inspect.signature(builder)
    unknown = sorted(set(hparams) - set(sig.parameters))
    if unknown:
        allowed = sorted(p for p in sig.parameters if p != "species")
        raise UnknownKeyError(
            f"model {name!r} got unknown argument(s) {unknown}{close_match(unknown[0], allowed)}; "
            f"it takes {allowed}"
        )
    bound = sig.bind(species=list(species), **hparams)
    bound.apply_defaults()
    model = builder(*bound.args, **bound.kwargs)
    model.hparams = {"name": name, **bound.arguments}
    return model
