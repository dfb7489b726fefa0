"""Learned simulators and their own name -> builder registry.

A simulator is not an energy model: it maps a window of past positions to
accelerations and has no :class:`physnet.Potential`, forces or ASE calculator. It
therefore joins a registry of its own, separate from :mod:`physnet.models.registry`
(whose builders take ``species`` and return an :class:`EnergyModel` that every energy
test and ``physnet train`` may build by name). The API mirrors that registry:

>>> import physnet
>>> "gns" in physnet.models.available_simulators()
True
>>> sim = physnet.models.build_simulator("gns", dim=2, latent_size=16, hidden_size=16, n_message_passing=2)
>>> sim.hparams["n_message_passing"]
2
>>> "gns" in physnet.models.available()  # not among the energy models
False
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Callable
from typing import Any, TypeVar

import torch

__all__ = ["Simulator", "register_simulator", "build_simulator", "available_simulators", "load_simulator"]


class Simulator(torch.nn.Module):
    """Base of learned particle simulators.

    ``forward(graph) -> acceleration [n_particles, dim]`` from the graph's window of past
    positions; data statistics live in buffers (saved with ``state_dict``); ``forward``
    stores nothing on the module.

    Attributes:
        hparams: the name and keyword arguments that rebuild the model with :func:`build_simulator`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.hparams: dict[str, Any] = {}

    def save(self, path: str | os.PathLike) -> None:
        """Write a checkpoint ``{"hparams", "state_dict"}``, read back by :func:`load_simulator`."""
        torch.save({"hparams": dict(self.hparams), "state_dict": self.state_dict()}, path)


_SIMULATORS: dict[str, Callable[..., Simulator]] = {}
# built-in names -> the module whose import registers them (imported on first look-up)
_BUILTIN: dict[str, str] = {"gns": "physnet.models.gns"}
S = TypeVar("S", bound=Callable[..., Any])


def register_simulator(name: str) -> Callable[[S], S]:
    """Class decorator adding a simulator builder under ``name``."""

    def wrap(builder: S) -> S:
        taken = name in _SIMULATORS or (name in _BUILTIN and builder.__module__ != _BUILTIN[name])
        if taken:
            raise ValueError(f"a simulator named {name!r} is already registered")
        _SIMULATORS[name] = builder
        return builder

    return wrap


def available_simulators() -> list[str]:
    """Names of the registered simulators (built-in ones included, imported or not), sorted."""
    return sorted(set(_SIMULATORS) | set(_BUILTIN))


def build_simulator(name: str, **hparams: Any) -> Simulator:
    """Build a registered simulator; unknown keyword arguments are an error.

    Returns:
        the model, with ``model.hparams`` holding ``name`` and every keyword argument
        (defaults filled in) so that a checkpoint can rebuild it.
    """
    if name not in _SIMULATORS and name in _BUILTIN:
        importlib.import_module(_BUILTIN[name])
    if name not in _SIMULATORS:
        raise ValueError(f"unknown simulator {name!r}; available: {available_simulators()}")
    builder = _SIMULATORS[name]
    sig = inspect.signature(builder)
    unknown = set(hparams) - set(sig.parameters)
    if unknown:
        raise TypeError(
            f"simulator {name!r} got unknown argument(s) {sorted(unknown)}; it takes {list(sig.parameters)}"
        )
    bound = sig.bind(**hparams)
    bound.apply_defaults()
    model = builder(*bound.args, **bound.kwargs)
    model.hparams = {"name": name, **bound.arguments}
    return model


def load_simulator(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Simulator:
    """Rebuild a simulator written by :meth:`Simulator.save` (weights and statistics buffers)."""
    payload = torch.load(path, map_location=map_location, weights_only=True)
    hparams = dict(payload["hparams"])
    model = build_simulator(hparams.pop("name"), **hparams)
    # keep the saved precision: a float64-trained model must not come back as float32
    dtypes = {v.dtype for v in payload["state_dict"].values() if v.is_floating_point()}
    if len(dtypes) == 1:
        model = model.to(dtypes.pop())
    model.load_state_dict(payload["state_dict"])
    return model.eval()
