"""Committees of potentials: the mean prediction and the spread that says how sure it is.

K potentials trained on the same data with different seeds (``physnet train ...
trainer.committee=K``) agree where the data was dense and disagree where it was not; the
spread of their forces flags structures outside the training data (query by committee,
Seung et al., COLT 1992; for interatomic potentials e.g. Smith et al., J. Chem. Phys. 148,
241733 (2018), and the model deviation of DP-GEN, Zhang et al., Comput. Phys. Commun. 253,
107206 (2020)).

For K members with energies E_k and forces F_k,i:

- energy, forces, stress: the means over members;
- ``energy_std`` [n_graphs]: sqrt(mean_k (E_k - <E>)^2) (population standard deviation);
- ``forces_std`` [n_atoms]: sqrt(mean_k |F_k,i - <F_i>|^2), the per-atom force deviation of
  DP-GEN's ``max_devi_f`` (its largest value over atoms, ``max_forces_std``, is what MD watches).

Members are evaluated one after another (each with its own frozen inference copy, e.g. SchNet's
tabulated filters), or stacked with :func:`torch.func.stack_module_state` and
:func:`torch.func.vmap` (``mode="vmap"``); ``docs/experiments/finetune_and_committees.md`` has
the measured speed of both.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from physnet.data import keys as K
from physnet.nn.scatter import scatter_sum
from physnet.potential import Potential

__all__ = ["Committee", "COMMITTEE_FILE", "committee_paths"]

Graph = dict[str, torch.Tensor]
COMMITTEE_FILE = "committee.json"  # in a committee run directory: {"members": [relative paths]}
MODES = ("loop", "vmap")


def committee_paths(path: str | os.PathLike) -> list[Path]:
    """The member files of a committee: a directory from ``physnet train ... trainer.committee=K``
    (its ``committee.json``), or that JSON file itself."""
    p = Path(path)
    file = p / COMMITTEE_FILE if p.is_dir() else p
    if not file.is_file():
        raise FileNotFoundError(
            f"{p} is not a committee: no {COMMITTEE_FILE}; give a run directory trained with "
            "trainer.committee=K or a list of potential files"
        )
    try:
        members = json.loads(file.read_text())["members"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise ValueError(f"{file} is not a committee file (expected {{'members': [paths]}})") from None
    return [file.parent / m for m in members]


def is_committee(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a committee directory or committee JSON file."""
    p = Path(path)
    return (p.is_dir() and (p / COMMITTEE_FILE).is_file()) or (p.is_file() and p.suffix == ".json")


class Committee(torch.nn.Module):
    """K potentials evaluated together: mean energy, forces and stress and their spread.

    Args:
        members: :class:`physnet.Potential` objects or paths of ``potential.pt`` / checkpoint
            files (at least 2), or one committee directory / ``committee.json``.
        mode: ``"loop"`` (each member in turn, default) or ``"vmap"`` (stacked weights,
            :func:`torch.func.vmap`; members must share one model architecture).

    Members must agree on species, cutoff, energy and length unit (``ValueError`` names the
    difference).

    Example:
        >>> import physnet, torch
        >>> from physnet.committee import Committee
        >>> members = []
        >>> for seed in (0, 1):
        ...     _ = torch.manual_seed(seed)
        ...     members.append(physnet.Potential(physnet.models.build("schnet", species=["H", "O"])))
        >>> committee = Committee(members)
        >>> out = committee(physnet.data.from_ase(physnet.data.from_smiles("O")[0], committee.cutoff))
        >>> out["energy_std"].shape, out["forces_std"].shape
        (torch.Size([1]), torch.Size([3]))
    """

    def __init__(
        self, members: Sequence[Potential | str | os.PathLike] | str | os.PathLike, mode: str = "loop"
    ) -> None:
        super().__init__()
        if isinstance(members, (str, os.PathLike)):
            members = committee_paths(members)
        loaded = []
        for m in members:
            if isinstance(m, (str, os.PathLike)):
                if str(m).endswith(".pt2"):
                    raise ValueError(
                        f"{m}: committees of exported .pt2 files are not supported; give the potential.pt "
                        "files they were exported from"
                    )
                m = Potential.load(m)
            if not isinstance(m, Potential):
                raise TypeError(
                    f"a committee member must be a physnet.Potential or a file, got {type(m).__name__}"
                )
            loaded.append(m)
        if len(loaded) < 2:
            raise ValueError(f"a committee needs at least 2 potentials, got {len(loaded)}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        first = loaded[0]
        for k, m in enumerate(loaded[1:], start=1):
            for what, mine, theirs in (
                ("species", first.species, m.species),
                ("cutoff", first.cutoff, m.cutoff),
                ("energy unit", first.energy_unit, m.energy_unit),
                ("length unit", first.length_unit, m.length_unit),
            ):
                if mine != theirs:
                    raise ValueError(
                        f"committee member {k} has {what} {theirs!r} but member 0 has {mine!r}; "
                        "a committee needs potentials trained on the same species, cutoff and units"
                    )
        if mode == "vmap":
            shapes = [{k: v.shape for k, v in m.state_dict().items()} for m in loaded]
            if any(s != shapes[0] for s in shapes[1:]) or any(m.config() != first.config() for m in loaded):
                raise ValueError('mode="vmap" needs members with one architecture; use mode="loop"')
        self.members = torch.nn.ModuleList(loaded)
        self.mode = mode
        self.energy_unit = first.energy_unit
        self.length_unit = first.length_unit
        self._stacked: tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]] | None = None

    @classmethod
    def load(cls, path: str | os.PathLike, mode: str = "loop") -> Committee:
        """A committee from a run directory of ``trainer.committee=K`` or its ``committee.json``."""
        return cls(committee_paths(path), mode=mode)

    def __len__(self) -> int:
        return len(self.members)

    @property
    def cutoff(self) -> float:
        return self.members[0].cutoff

    @property
    def species(self) -> list[str]:
        return self.members[0].species

    @property
    def interaction_range(self) -> float:
        return max(m.interaction_range for m in self.members)

    def check_species(self, z: torch.Tensor) -> None:
        self.members[0].check_species(z)

    def check(self, graph: Graph) -> None:
        self.members[0].check(graph)

    def frozen(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> Committee:
        """An inference copy (see :meth:`physnet.Potential.frozen`): every member frozen; in
        ``vmap`` mode the members' weights stacked once here."""
        new = Committee.__new__(Committee)
        torch.nn.Module.__init__(new)
        new.mode, new.energy_unit, new.length_unit = self.mode, self.energy_unit, self.length_unit
        new._stacked = None
        if self.mode == "loop":
            new.members = torch.nn.ModuleList(m.frozen(device=device, dtype=dtype) for m in self.members)
        else:
            members = [copy.deepcopy(m).to(device=device, dtype=dtype) for m in self.members]
            members = [m.eval().requires_grad_(False) for m in members]
            new.members = torch.nn.ModuleList(members)
            new._stacked = torch.func.stack_module_state([_Terms(m) for m in members])
        return new.eval()

    def forward(
        self,
        graph: Graph,
        compute_forces: bool = True,
        compute_stress: bool | None = None,
        check: bool = True,
    ) -> Graph:
        """Mean energy [n_graphs], ``atomic_energy`` [n_atoms], forces [n_atoms, 3] and stress
        [n_graphs, 3, 3] (as :meth:`physnet.Potential.forward`), their spread ``energy_std``
        [n_graphs] and ``forces_std`` [n_atoms] (energy unit, energy / length unit), and the
        members' ``energy_members`` [K, n_graphs], ``forces_members`` [K, n_atoms, 3] (and
        ``stress_members``). Outputs are detached."""
        if check:
            self.check(graph)
        if compute_stress is None:
            compute_stress = bool(graph[K.PBC].any(dim=1).all()) and bool(
                (torch.linalg.det(graph[K.CELL]).abs() > 0).all()
            )
        if self.mode == "vmap" and self._stacked is not None:
            energy, forces, stress, atomic = self._vmap(graph, compute_stress)
        else:
            outs = [
                m(graph, compute_forces=True, compute_stress=compute_stress, check=False)
                for m in self.members
            ]
            energy = torch.stack([o[K.ENERGY].detach() for o in outs])  # [K, n_graphs]
            forces = torch.stack([o[K.FORCES].detach() for o in outs])  # [K, n_atoms, 3]
            atomic = torch.stack([o[K.ATOMIC_ENERGY].detach() for o in outs])
            stress = torch.stack([o[K.STRESS].detach() for o in outs]) if compute_stress else None
        mean_f = forces.mean(0)
        out: Graph = {
            K.ENERGY: energy.mean(0),
            K.ATOMIC_ENERGY: atomic.mean(0),
            "energy_std": energy.std(0, unbiased=False),
            "forces_std": (forces - mean_f).pow(2).sum(-1).mean(0).sqrt(),
            "energy_members": energy,
            "forces_members": forces,
        }
        if compute_forces:
            out[K.FORCES] = mean_f
        if stress is not None:
            out[K.STRESS] = stress.mean(0)
            out["stress_members"] = stress
        return out

    def _vmap(
        self, graph: Graph, compute_stress: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Every member at once: weights stacked along a leading axis, :func:`torch.func.vmap`
        over them, forces (and stress) by :func:`torch.func.grad` inside."""
        from torch.func import functional_call, grad, vmap

        base = _Terms(self.members[0])
        n_graphs = graph[K.N_ATOMS].shape[0]
        batch = graph[K.BATCH]
        params, buffers = self._stacked

        def energies(p, b, pos, eps):
            g = dict(graph)
            g[K.POS] = pos
            if eps is not None:
                sym = 0.5 * (eps + eps.transpose(-1, -2))
                g[K.POS] = pos + torch.einsum("ni,nij->nj", pos, sym[batch])
                g[K.CELL] = graph[K.CELL] + torch.bmm(graph[K.CELL], sym)
            atom_terms, graph_terms = functional_call(base, (p, b), (g,), {}, strict=False, tie_weights=False)
            atomic = torch.stack(list(atom_terms.values()), -1).sum(-1)  # [n_atoms]
            e = scatter_sum(atomic, batch, n_graphs)
            for value in graph_terms.values():
                e = e + value
            return e.sum(), (e, atomic)

        pos = graph[K.POS]
        eps = torch.zeros_like(graph[K.CELL]) if compute_stress else None
        argnums = (2, 3) if compute_stress else 2
        grads, (energy, atomic) = vmap(
            grad(energies, argnums=argnums, has_aux=True), in_dims=(0, 0, None, None)
        )(params, buffers, pos, eps)
        if compute_stress:
            g_pos, g_eps = grads
            volume = torch.linalg.det(graph[K.CELL]).abs().view(1, -1, 1, 1)
            stress = g_eps / volume
        else:
            g_pos, stress = grads, None
        return (
            energy.detach(),
            (-g_pos).detach(),
            None if stress is None else stress.detach(),
            atomic.detach(),
        )


class _Terms(torch.nn.Module):
    """A potential whose ``forward`` is :meth:`Potential.energy_terms` (no autograd inside), the
    entry point of :func:`torch.func.functional_call` in the stacked evaluation."""

    def __init__(self, potential: Potential) -> None:
        super().__init__()
        self.potential = potential

    def forward(self, graph: Graph) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        return self.potential.energy_terms(graph)
