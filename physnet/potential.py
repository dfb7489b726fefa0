"""The one wrapper that turns any energy model into energies, forces and stress.

:class:`Potential` adds prior terms and per-element reference energies to a
model's energy, reduces per-atom energies to per-graph energies in one
scatter-sum, and differentiates once with :func:`compute_forces_and_stress`
(``create_graph`` only while training). Every model in physnet goes through it.
"""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from physnet.data import keys as K
from physnet.data.graph import atomic_number
from physnet.models.registry import EnergyModel, build
from physnet.nn.priors import Prior, build_prior
from physnet.nn.scatter import scatter_sum
from physnet.units import energy_factor, length_factor

__all__ = ["Potential", "compute_forces_and_stress", "potential_file", "strain_graph"]

Graph = dict[str, torch.Tensor]
CHECKPOINT_FORMAT = "physnet.Potential/1"
RUN_POTENTIAL = "potential.pt"  # what ``physnet train`` leaves in its run directory


def potential_file(path: str | os.PathLike) -> Path:
    """The potential file ``path`` names: ``path`` itself, or ``path/potential.pt`` for the run
    directory of a ``physnet train`` run.

    Raises:
        UserError: ``path`` is a directory without ``potential.pt`` (a committee directory, with
            its ``committee.json``, is named as such: :class:`physnet.Committee` reads it).
    """
    from physnet.errors import UserError

    p = Path(path)
    if not p.is_dir():
        return p
    if (p / RUN_POTENTIAL).is_file():
        return p / RUN_POTENTIAL
    if (p / "committee.json").is_file():
        raise UserError(
            f"{p} is a committee directory (committee.json, no {RUN_POTENTIAL}); this takes one potential: "
            f"give one member's potential.pt (e.g. {p / 'member_0' / RUN_POTENTIAL})"
        )
    ckpt = p / "checkpoints" / "last.ckpt"
    hint = (
        f" ({ckpt} is there: the run did not finish; give it, or --resume the run)" if ckpt.is_file() else ""
    )
    raise UserError(
        f"{p} is a directory with neither {RUN_POTENTIAL} nor committee.json{hint}; give the run directory "
        "of a physnet train run, a committee directory, or a potential or checkpoint file"
    )


def strain_graph(graph: Graph) -> tuple[Graph, torch.Tensor]:
    """Apply a zero symmetric strain to positions and cell, for stress by autograd.

    Returns a shallow copy of ``graph`` with ``pos' = pos (1 + eps_sym)`` and
    ``cell' = cell (1 + eps_sym)`` and the displacement ``eps`` [n_graphs, 3, 3]
    (zeros, requires grad). dE/d eps / volume is the stress (Knuth et al., Comput.
    Phys. Commun. 190, 33 (2015); as schnetpack and nequip do).
    """
    cell = graph[K.CELL]
    eps = torch.zeros_like(cell, requires_grad=True)  # [n_graphs, 3, 3]
    sym = 0.5 * (eps + eps.transpose(-1, -2))
    out = dict(graph)
    pos = graph[K.POS]
    out[K.POS] = pos + torch.einsum("ni,nij->nj", pos, sym[graph[K.BATCH]])
    out[K.CELL] = cell + torch.bmm(cell, sym)
    return out, eps


def compute_forces_and_stress(
    energy: torch.Tensor,
    pos: torch.Tensor,
    strain: torch.Tensor | None,
    cell: torch.Tensor | None,
    training: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The one autograd helper: forces = -dE/dpos, stress = dE/d(strain) / volume.

    Args:
        energy: [n_graphs] total energies.
        pos: [n_atoms, 3] positions the energy was computed from (requires grad).
        strain: [n_graphs, 3, 3] displacement from :func:`strain_graph`, or None.
        cell: [n_graphs, 3, 3] unstrained cell, needed with ``strain``.
        training: keep the graph for a loss on forces or higher derivatives (``create_graph``).

    Returns:
        forces [n_atoms, 3] and stress [n_graphs, 3, 3] (ASE sign convention: positive
        under tension) or None.
    """
    inputs = [pos] if strain is None else [pos, strain]
    grads = torch.autograd.grad([energy.sum()], inputs, create_graph=training, allow_unused=True)
    forces = -grads[0] if grads[0] is not None else torch.zeros_like(pos)
    stress = None
    if strain is not None:
        assert cell is not None
        volume = torch.linalg.det(cell).abs()  # [n_graphs]
        g = grads[1] if grads[1] is not None else torch.zeros_like(strain)
        stress = g / volume.view(-1, 1, 1)
    return forces, stress


class Potential(torch.nn.Module):
    """Energy, forces and stress from any :class:`EnergyModel`, priors and references.

    E = sum_i [s * e_model(i) + b + e_ref(Z_i) + sum_p e_p(i)] (+ per-graph terms),
    F = -dE/dx, stress = (1/V) dE/d(strain). Each term is returned separately. The
    scale ``s`` and per-atom shift ``b`` (buffers ``energy_scale``, ``energy_shift``;
    1 and 0 until training sets them from data statistics) let every model work on
    targets of unit size; for a per-graph model ``b`` is added once per graph.

    Args:
        model: a per-atom (or per-graph) energy model from :func:`physnet.models.build`.
        priors: named prior terms (:mod:`physnet.nn.priors`); their cutoffs must not
            exceed the model's.
        atom_refs: per-element reference energies {element: energy}, in ``energy_unit``.
        energy_unit: energy unit of the model's outputs (and of its training data).
        length_unit: length unit of positions.

    Example:
        >>> import physnet, torch
        >>> pot = physnet.Potential(physnet.models.build("schnet", species=["H", "O"]))
        >>> atoms = physnet.data.from_smiles("O")[0]
        >>> out = pot(physnet.data.from_ase(atoms, pot.cutoff))
        >>> out["energy"].shape, out["forces"].shape
        (torch.Size([1]), torch.Size([3, 3]))
    """

    def __init__(
        self,
        model: EnergyModel,
        priors: Mapping[str, Prior] | None = None,
        atom_refs: Mapping[int | str, float] | None = None,
        energy_unit: str = "eV",
        length_unit: str = "Å",
    ) -> None:
        super().__init__()
        energy_factor(energy_unit)
        length_factor(length_unit)
        self.model = model
        self.priors = torch.nn.ModuleDict(dict(priors or {}))
        reserved = {"model", "reference"} & set(self.priors)
        if reserved:
            raise ValueError(
                f"prior name(s) {sorted(reserved)} are reserved for the model and reference terms"
            )
        for name, prior in self.priors.items():
            for key, mine in (("energy_unit", energy_unit), ("length_unit", length_unit)):
                theirs = prior.hparams.get(key)
                if theirs is not None and theirs != mine:
                    raise ValueError(
                        f"prior {name!r} has {key}={theirs!r} but the potential has {mine!r}; "
                        f"build the prior with {key}={mine!r}"
                    )
            if prior.cutoff > model.cutoff:
                raise ValueError(
                    f"prior {name!r} needs cutoff {prior.cutoff} > the model's {model.cutoff}; "
                    "lower the prior's cutoff or raise the model's"
                )
        refs = torch.zeros(len(model.species))
        for element, value in (atom_refs or {}).items():
            z = atomic_number(element)
            if z not in model.species.atomic_numbers:
                raise ValueError(
                    f"reference energy given for {element!r}, which is not in the model's species "
                    f"{model.species.symbols}"
                )
            refs[model.species.atomic_numbers.index(z)] = float(value)
        self.register_buffer("atom_refs", refs)  # [n_species], energy_unit
        self.register_buffer("energy_scale", torch.ones(()))  # energy_unit
        self.register_buffer("energy_shift", torch.zeros(()))  # energy_unit per atom
        self.energy_unit = energy_unit
        self.length_unit = length_unit

    @property
    def cutoff(self) -> float:
        """Neighbour cutoff the input graphs must be built with (length unit)."""
        return self.model.cutoff

    @property
    def species(self) -> list[str]:
        return self.model.species.symbols

    @property
    def interaction_range(self) -> float:
        """How far an atom's energy reaches (length unit): the model's receptive field
        (:attr:`EnergyModel.interaction_range`) or a prior's cutoff, whichever is larger."""
        return max([self.model.interaction_range, *(p.cutoff for p in self.priors.values())])

    def check_species(self, z: torch.Tensor) -> None:
        """``ValueError`` naming any element in ``z`` [n_atoms] the model was not built for."""
        self.model.species.check(z)

    def check(self, graph: Graph) -> None:
        """Raise ``ValueError`` for an element the model was not built for, a dtype that is
        not the model's or a graph built with another cutoff (the ``cutoff`` that
        :func:`physnet.data.from_ase` records). :meth:`forward` calls it unless told not to;
        engines that feed many graphs of one structure (the ASE calculator, an exported file's
        caller) call it once."""
        self.model.species.check(graph[K.Z])
        pos = graph[K.POS]
        param = next(iter(self.model.parameters()), None)
        if param is not None and param.dtype != pos.dtype:
            raise ValueError(
                f"positions are {pos.dtype} but the model is {param.dtype}; "
                f"call potential.to({pos.dtype}) or build the graph with dtype={param.dtype}"
            )
        if K.CUTOFF in graph and graph[K.CUTOFF].numel():
            built = graph[K.CUTOFF]
            cutoff = float(self.cutoff)
            if bool(((built - cutoff).abs() > 1e-6 * max(cutoff, 1.0)).any()):
                other = float(built[(built - cutoff).abs() > 1e-6 * max(cutoff, 1.0)][0])
                raise ValueError(
                    f"the graph was built with cutoff {other:g} but the potential's cutoff is {cutoff:g} "
                    f"{self.length_unit}: its neighbour list is wrong for this model; build it with "
                    "physnet.data.from_ase(atoms, potential.cutoff)"
                )

    def energy_terms(self, graph: Graph) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The energy terms of a (batched) graph, without checks or derivatives.

        Returns:
            per-atom terms ``{name: [n_atoms]}`` (the model when it is per-atom, ``reference``
            and per-atom priors) and per-graph terms ``{name: [n_graphs]}`` (a per-graph model
            such as CGnet, per-graph priors), in ``energy_unit``.
        """
        atom_terms: dict[str, torch.Tensor] = {}
        graph_terms: dict[str, torch.Tensor] = {}
        model_energy = self.model(graph) * self.energy_scale + self.energy_shift
        (atom_terms if self.model.per_atom else graph_terms)["model"] = model_energy
        atom_terms["reference"] = self.atom_refs.to(graph[K.POS].dtype)[self.model.species(graph[K.Z])]
        for name, prior in self.priors.items():
            (atom_terms if prior.per_atom else graph_terms)[name] = prior(graph)
        return atom_terms, graph_terms

    def forward(
        self,
        graph: Graph,
        compute_forces: bool = True,
        compute_stress: bool | None = None,
        check: bool = True,
    ) -> Graph:
        """Energies of a (batched) graph, with forces and stress by autograd.

        Args:
            graph: a graph from :func:`physnet.data.from_ase` or :func:`physnet.data.collate`.
            compute_forces: return ``forces`` [n_atoms, 3].
            compute_stress: return ``stress`` [n_graphs, 3, 3]; ``None`` means "if every
                graph is periodic with a non-singular cell".
            check: run :meth:`check` on the graph first (and, with ``compute_stress``, check
                that every cell is non-singular): host syncs; an engine that checked the
                structure once passes False, and then a forward pass with explicit
                ``compute_stress`` reads nothing back from the device.

        Returns:
            dict with ``energy`` [n_graphs], ``atomic_energy`` [n_atoms] (per-atom terms),
            ``energy_<term>`` [n_graphs] for ``model``, ``reference`` and each prior, and
            ``forces`` / ``stress`` when computed.
        """
        if check:
            self.check(graph)
        pos = graph[K.POS]
        n_graphs = graph[K.N_ATOMS].shape[0]
        batch = graph[K.BATCH]
        if compute_stress is None:  # decided from the data: one host sync
            compute_stress = bool(graph[K.PBC].any(dim=1).all()) and bool(
                (torch.linalg.det(graph[K.CELL]).abs() > 0).all()
            )
        elif compute_stress and check and not bool((torch.linalg.det(graph[K.CELL]).abs() > 0).all()):
            raise ValueError("stress needs a non-singular cell in every graph of the batch")
        need_grad = compute_forces or compute_stress
        # Outputs stay differentiable while training, or when the caller's positions
        # already require grad (e.g. to take a Hessian); otherwise they are detached.
        differentiable = self.training or pos.requires_grad
        with torch.enable_grad() if need_grad else contextlib.nullcontext():
            if need_grad and not pos.requires_grad:
                pos = pos.detach().requires_grad_(True)
            g = dict(graph)
            g[K.POS] = pos
            strain = None
            if compute_stress:
                g, strain = strain_graph(g)

            atom_terms, graph_terms = self.energy_terms(g)
            stacked = torch.stack(list(atom_terms.values()), dim=-1)  # [n_atoms, n_terms]
            per_graph = scatter_sum(stacked, batch, n_graphs)  # [n_graphs, n_terms]
            energy = per_graph.sum(-1)
            for value in graph_terms.values():
                energy = energy + value
            out: Graph = {K.ENERGY: energy, K.ATOMIC_ENERGY: stacked.sum(-1)}
            for n, name in enumerate(atom_terms):
                out[K.energy_term_key(name)] = per_graph[:, n]
            for name, value in graph_terms.items():
                out[K.energy_term_key(name)] = value
            if need_grad:
                forces, stress = compute_forces_and_stress(energy, pos, strain, graph[K.CELL], differentiable)
                if compute_forces:
                    out[K.FORCES] = forces
                if stress is not None:
                    out[K.STRESS] = stress
        if not differentiable:
            out = {k: v.detach() for k, v in out.items()}
        return out

    def frozen(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> Potential:
        """A private inference copy: cast, eval mode, weights frozen, model tables built.

        Forces need gradients with respect to positions only: without weight gradients autograd
        records no weight-only paths (faster, same forces; docs/benchmarks.md).
        Then :meth:`EnergyModel.prepare_inference` precomputes weight-only quantities (SchNet's
        filter tables). The copy's forces are first-order differentiable only (no Hessians);
        use the potential itself for higher derivatives. This potential is left untouched.
        """
        potential = copy.deepcopy(self).to(device=device, dtype=dtype).eval()
        potential.requires_grad_(False)
        potential.model.prepare_inference()
        return potential

    # ------------------------------------------------------------------ I/O
    def config(self) -> dict[str, Any]:
        """Everything except weights that :meth:`load` needs to rebuild this potential."""
        return {
            "format": CHECKPOINT_FORMAT,
            "model": dict(self.model.hparams),
            "priors": {name: dict(p.hparams) for name, p in self.priors.items()},
            "energy_unit": self.energy_unit,
            "length_unit": self.length_unit,
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write a self-contained file (config + weights), atomically."""
        if not self.model.hparams:
            raise ValueError(
                "the model was not made by physnet.models.build, so it cannot be rebuilt on load"
            )
        from physnet.errors import atomic_write

        payload = {**self.config(), "state_dict": self.state_dict()}
        atomic_write(path, lambda tmp: torch.save(payload, tmp))

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Potential:
        """Rebuild (untrained) from :meth:`config`."""
        if config.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(
                f"not a physnet potential (format {config.get('format')!r}, expected {CHECKPOINT_FORMAT!r})"
            )
        hp = dict(config["model"])
        model = build(hp.pop("name"), **hp)
        priors = {name: build_prior(p) for name, p in config["priors"].items()}
        return cls(model, priors, energy_unit=config["energy_unit"], length_unit=config["length_unit"])

    @classmethod
    def load(cls, path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Potential:
        """Load a file written by :meth:`save` or a ``physnet train`` Lightning checkpoint, or the
        ``potential.pt`` of a ``physnet train`` run directory given as ``path``."""
        from physnet.errors import UserError, load_torch_file

        path = potential_file(path)
        data = load_torch_file(path, "physnet potential or checkpoint", map_location=map_location)
        if not isinstance(data, dict) or not ("physnet" in data or "format" in data):
            raise UserError(
                f"{path} is not a physnet potential or checkpoint (no physnet config in it); give a "
                "potential.pt or checkpoints/*.ckpt from physnet train"
            )
        if "physnet" in data:  # Lightning checkpoint of a PotentialTask
            config = data["physnet"]
            prefix = "potential."
            state = {k[len(prefix) :]: v for k, v in data["state_dict"].items() if k.startswith(prefix)}
        else:
            config, state = data, data.get("state_dict", {})
        try:
            potential = cls.from_config(config)
        except (TypeError, ValueError, KeyError) as err:
            raise UserError(f"{path}: its config cannot rebuild the potential: {err}") from err
        dtypes = {v.dtype for v in state.values() if v.is_floating_point()}
        if len(dtypes) == 1:
            potential.to(dtypes.pop())
        try:
            potential.load_state_dict(state)
        except RuntimeError as err:
            lines = [ln.strip() for ln in str(err).splitlines()[1:] if ln.strip()]
            raise UserError(
                f"{path}: the weights do not match the model its hyper-parameters describe "
                f"({config.get('model', {}).get('name')}): {lines[0] if lines else err}; the file was "
                "edited or mixes two runs: use the run's own potential.pt or checkpoint"
            ) from err
        return potential
