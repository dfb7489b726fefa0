"""Name -> builder registries: one mechanism (:class:`Registry`) for every kind of model.

Energy models join :data:`ENERGY_MODELS` (``register`` / ``build`` / ``available`` below),
learned simulators :data:`physnet.models.simulator.SIMULATORS`, N-body dynamics models
:data:`physnet.models.dynamics.DYNAMICS_MODELS`; all record ``hparams`` and rebuild alike.

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
import numbers
import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch

from physnet.data.graph import SpeciesIndex
from physnet.errors import UnknownKeyError, UserError, close_match
from physnet.models import builtin

__all__ = [
    "EnergyModel",
    "Registry",
    "ENERGY_MODELS",
    "register",
    "build",
    "available",
    "save_model",
    "SavedModel",
]


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


M = TypeVar("M", bound=Callable[..., Any])
# every registry, for tests that check the lazy tables against the modules
REGISTRIES: list[Registry] = []


class Registry:
    """A name -> builder table of one kind of model (energy models, simulators, dynamics models).

    Every kind of model joins one of these and is built, recorded and rebuilt the same way:
    :meth:`build` checks the keyword arguments against the builder's signature, fills in the
    defaults and stores ``{"name": name, **arguments}`` as ``model.hparams``, so that
    ``registry.build(**model.hparams)`` (or :meth:`load` of a :func:`save_model` file) rebuilds the
    model. Built-in names map to the module whose import registers them; that module is imported
    on the first look-up, so that building SchNet does not import e3nn.

    Args:
        kind: what the table holds, for messages ("model", "simulator", "dynamics model").
        builtin: built-in name -> module that registers it.
        fixed: arguments every builder of this kind takes from the caller rather than from the
            user's hyper-parameters (``species`` for energy models); left out of the list of
            allowed keywords in the unknown-argument message.
    """

    def __init__(self, kind: str, builtin: dict[str, str], fixed: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.builtin = dict(builtin)
        self.fixed = fixed
        self.builders: dict[str, Callable[..., Any]] = {}
        REGISTRIES.append(self)

    def register(self, name: str) -> Callable[[M], M]:
        """Class decorator adding a builder under ``name``; a taken name is a ``ValueError``."""

        def wrap(builder: M) -> M:
            home = self.builtin.get(name)
            if name in self.builders or (home is not None and builder.__module__ != home):
                raise ValueError(f"a {self.kind} named {name!r} is already registered")
            self.builders[name] = builder
            return builder

        return wrap

    def available(self) -> list[str]:
        """Registered names (built-in ones included, imported or not), sorted."""
        return sorted(set(self.builders) | set(self.builtin))

    def lookup(self, name: str) -> Callable[..., Any]:
        """The builder registered under ``name``, importing a built-in module on first use."""
        if name not in self.builders and name in self.builtin:
            importlib.import_module(self.builtin[name])
        if name not in self.builders:
            names = self.available()
            raise UserError(f"unknown {self.kind} {name!r}{close_match(name, names)}; available: {names}")
        return self.builders[name]

    def build(self, name: str, **kwargs: Any) -> Any:
        """Build ``name`` from keyword arguments; unknown ones are an :class:`UnknownKeyError`.

        Returns:
            the model, with ``model.hparams`` = ``{"name": name, **arguments}`` (defaults filled
            in, tuples as lists).
        """
        builder = self.lookup(name)
        sig = inspect.signature(builder)
        unknown = sorted(set(kwargs) - set(sig.parameters))
        if unknown:
            allowed = sorted(p for p in sig.parameters if p not in self.fixed)
            raise UnknownKeyError(
                f"{self.kind} {name!r} got unknown argument(s) {unknown}{close_match(unknown[0], allowed)}; "
                f"it takes {allowed}"
            )
        hints = _type_hints(builder)
        for key, value in kwargs.items():
            kwargs[key] = _check_type(
                self.kind, name, key, value, hints.get(key), sig.parameters[key].default
            )
        bound = sig.bind(**kwargs)
        bound.apply_defaults()
        model = builder(*bound.args, **bound.kwargs)
        # tuples (default sequences) as lists, so that the record is plain YAML / JSON
        plain = {k: list(v) if isinstance(v, tuple) else v for k, v in bound.arguments.items()}
        model.hparams = {"name": name, **plain}
        return model

    def rebuild(self, hparams: dict[str, Any]) -> Any:
        """The model a ``model.hparams`` record describes (fresh weights)."""
        hparams = dict(hparams)
        return self.build(hparams.pop("name"), **hparams)

    def load(self, path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
        """Rebuild a model written by :func:`save_model` (weights and buffers), in eval mode."""
        payload = torch.load(path, map_location=map_location, weights_only=True)
        model = self.rebuild(payload["hparams"])
        # keep the saved precision: a float64-trained model must not come back as float32
        dtypes = {v.dtype for v in payload["state_dict"].values() if v.is_floating_point()}
        if len(dtypes) == 1:
            model = model.to(dtypes.pop())
        model.load_state_dict(payload["state_dict"])
        return model.eval()


def _type_hints(builder: Callable[..., Any]) -> dict[str, Any]:
    """The builder's resolved argument annotations (``{}`` where they cannot be resolved)."""
    import typing

    try:
        return typing.get_type_hints(builder.__init__ if isinstance(builder, type) else builder)
    except Exception:  # an annotation naming something not importable here: no check
        return {}


def _check_type(kind: str, name: str, key: str, value: Any, hint: Any, default: Any) -> Any:
    """``value``, or a :class:`UserError` for a value of another kind than an argument annotated as
    exactly ``int``, ``float`` or ``bool`` (``n_features="abc"`` from a config), before the model's
    constructor fails deep inside torch. A number written as a string (YAML reads ``5e-4`` as one)
    is converted. Arguments that also take lists, ``None`` or anything else are left to the model."""
    if isinstance(value, str) and hint in (int, float):
        try:
            number = float(value)
            value = int(number) if hint is int and number.is_integer() else number
        except ValueError:
            pass
    if hint is bool:
        ok, want = isinstance(value, bool), "true or false"
    elif hint is int:
        ok, want = isinstance(value, numbers.Integral) and not isinstance(value, bool), "a whole number"
    elif hint is float:
        ok, want = isinstance(value, numbers.Real) and not isinstance(value, bool), "a number"
    else:
        return value
    if not ok:
        raise UserError(
            f"{kind} {name!r} argument {key}={value!r} is not {want} (default {default!r}); "
            f"give e.g. {key}={default!r}"
        )
    return value


def save_model(model: torch.nn.Module, path: str | os.PathLike) -> None:
    """Write ``{"hparams", "state_dict"}`` of a registry-built model, read back by :meth:`Registry.load`."""
    torch.save({"hparams": dict(model.hparams), "state_dict": model.state_dict()}, path)


class SavedModel(torch.nn.Module):
    """Base of the models that save themselves (simulators, dynamics models): ``hparams`` (set by
    :meth:`Registry.build`) and :meth:`save`, read back by that kind's :meth:`Registry.load`."""

    def __init__(self) -> None:
        super().__init__()
        self.hparams: dict[str, Any] = {}

    def save(self, path: str | os.PathLike) -> None:
        """Write a checkpoint ``{"hparams", "state_dict"}``."""
        save_model(self, path)


ENERGY_MODELS = Registry(
    "model",
    builtin.ENERGY_MODELS,
    fixed=("species",),
)


def register(name: str) -> Callable[[M], M]:
    """Class decorator adding an energy-model builder under ``name``."""
    return ENERGY_MODELS.register(name)


def available() -> list[str]:
    """Names of the registered energy models (built-in ones included, imported or not), sorted."""
    return ENERGY_MODELS.available()


def build(name: str, species: Sequence[int | str], **hparams: Any) -> EnergyModel:
    """Build a registered energy model.

    Args:
        name: a name from :func:`available`.
        species: elements (symbols or atomic numbers) the model handles.
        **hparams: the model's keyword arguments; unknown ones are an error.

    Returns:
        the model, with ``model.hparams`` recording ``name``, ``species`` and every
        keyword argument (defaults filled in) so a checkpoint can rebuild it.
    """
    return ENERGY_MODELS.build(name, species=list(species), **hparams)
