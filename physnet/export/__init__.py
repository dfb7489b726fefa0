"""Trained potentials as compiled files that need only libtorch: ``torch.export`` + AOTInductor.

:func:`export_potential` writes a ``.pt2`` package (AOTInductor) of a :class:`physnet.Potential`:
model, priors, per-element references and energy scale compiled to native code together with
the derivatives. The file maps

    pos [N, 3], z [N] int64 (atomic numbers), batch [N] int64, cell [G, 3, 3],
    edge_index [2, E] int64, edge_shift [E, 3] int64, weight [N]

to ``(energy [G], atomic_energy [N], forces [N, 3], virial [G, 3, 3])``, in the potential's units,
with N, E and G dynamic. The caller owns the neighbour list (``r_ij = pos[j] - pos[i] +
edge_shift_ij @ cell[batch[i]]``, full list, pairs closer than the file's cutoff); ``energy`` is
``sum_i weight_i e_i`` per graph (plus per-graph terms), so an engine that splits space gives its
ghost atoms weight 0 and takes ``forces`` on every atom, ghosts included. ``virial`` is
``-dE/d(strain)`` (LAMMPS's sign: ``sum_k x_k (x) f_k`` for a molecule); the stress (ASE's sign) is
``-virial / volume``.

Python loads it with ``torch._inductor.aoti_load_package`` (no physnet needed), C++ with
``torch::inductor::AOTIModelPackageLoader``; the file's metadata (:data:`METADATA_KEYS`) records
the format, cutoff, interaction range, species, units, dtype and the physnet and torch versions.
:class:`ExportedPotential` wraps a file with the :class:`physnet.Potential` call signature, so
:class:`physnet.Calculator` runs it in ASE; ``pair_style physnet`` runs it in LAMMPS
(:mod:`physnet.export.lammps`).

How: the forward pass with its ``torch.autograd.grad`` is first traced to an explicit graph of
forward and backward operators by ``make_fx`` (``torch.export`` alone cannot trace
``autograd.grad``), then exported with dynamic sizes and compiled by AOTInductor. Models take
their static-shape paths while traced (:func:`physnet.nn.tracing.exporting`); the angular
triplets of Behler-Parrinello are a data-dependent (unbacked) size that the compiled code
computes at run time. The compiled code targets the CPU (instruction set) or GPU it was
exported on.
"""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from physnet.data import keys as K

__all__ = [
    "FORMAT",
    "METADATA_KEYS",
    "ExportedPotential",
    "export_potential",
    "example_graph",
    "exported_inputs",
    "keep_freed_memory",
    "read_metadata",
]

FORMAT = "physnet.export/1"
METADATA_KEYS = (
    "format",  # FORMAT
    "model",  # registry name of the energy model
    "species",  # element symbols, space separated, in the model's order
    "atomic_numbers",  # the same as atomic numbers
    "cutoff",  # neighbour cutoff, length unit
    "interaction_range",  # how far an atom's energy reaches (ghost atoms must reach it), length unit
    "per_atom",  # "1": energy is a sum of per-atom energies; "0": a per-graph model (CGnet)
    "n_beads",  # per-graph CG models: beads per molecule ("0" otherwise)
    "energy_unit",  # e.g. "eV", "kcal/mol"
    "length_unit",  # e.g. "Å", "nm"
    "energy_to_eV",  # eV per energy unit
    "length_to_angstrom",  # Å per length unit
    "dtype",  # "float32" or "float64": the float inputs and outputs
    "device",  # "cpu" or "cuda"
    "physnet_version",
    "torch_version",
)
INPUT_NAMES = ("pos", "z", "batch", "cell", "edge_index", "edge_shift", "weight")
OUTPUT_NAMES = ("energy", "atomic_energy", "forces", "virial")


class _ExportModule(torch.nn.Module):
    """The function the file holds: energies, forces and virial of a potential (see module doc)."""

    def __init__(self, potential: torch.nn.Module) -> None:
        super().__init__()
        self.potential = potential

    def forward(
        self,
        pos: torch.Tensor,
        z: torch.Tensor,
        batch: torch.Tensor,
        cell: torch.Tensor,
        edge_index: torch.Tensor,
        edge_shift: torch.Tensor,
        weight: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        from physnet.nn.scatter import scatter_sum
        from physnet.potential import strain_graph

        n_graphs = cell.shape[0]
        with torch.enable_grad():
            pos = pos.detach().requires_grad_(True)
            counts = scatter_sum(torch.ones_like(batch), batch, n_graphs)  # [G], static shape
            graph = {
                K.POS: pos,
                K.Z: z,
                K.BATCH: batch,
                K.CELL: cell,
                K.PBC: cell.abs().sum(-1) > 0,
                K.N_ATOMS: counts,
                K.EDGE_INDEX: edge_index,
                K.EDGE_SHIFT: edge_shift,
            }
            graph, strain = strain_graph(graph)
            atom_terms, graph_terms = self.potential.energy_terms(graph)
            atomic_energy = torch.stack(list(atom_terms.values()), dim=-1).sum(-1)  # [N]
            energy = scatter_sum(atomic_energy * weight, batch, n_graphs)  # [G]
            for value in graph_terms.values():
                energy = energy + value
            grad_pos, grad_strain = torch.autograd.grad([energy.sum()], [pos, strain], allow_unused=True)
        forces = -grad_pos if grad_pos is not None else torch.zeros_like(pos)
        virial = -grad_strain if grad_strain is not None else torch.zeros_like(cell)
        return energy.detach(), atomic_energy.detach(), forces.detach(), virial.detach()


def example_graph(potential: Any, dtype: torch.dtype, seed: int = 0) -> dict[str, torch.Tensor]:
    """A batch of two random structures for tracing: a molecule and a periodic triclinic box
    (one CG molecule twice for a per-graph bead model), every element present, many edges."""
    from ase import Atoms

    from physnet.data.graph import collate, from_ase

    model = potential.model
    numbers = model.species.atomic_numbers
    rng = np.random.default_rng(seed)
    cutoff = potential.cutoff
    n_beads = int(getattr(model, "n_beads", 0) or 0)

    def random_positions(n: int, box: float) -> np.ndarray:
        # rejection sampling with a minimum distance of 0.12 cutoffs: no coincident atoms
        points: list[np.ndarray] = []
        while len(points) < n:
            p = rng.uniform(0.0, box, 3)
            if all(np.linalg.norm(p - q) > 0.12 * cutoff for q in points):
                points.append(p)
        return np.array(points)

    if n_beads:  # CGnet and its priors: a fixed bead order, molecules only
        z = [numbers[n % len(numbers)] for n in range(n_beads)]
        chain = np.cumsum(rng.normal(0.0, 0.2 * cutoff, (n_beads, 3)) + [0.25 * cutoff, 0, 0], axis=0)
        structures = [Atoms(numbers=z, positions=chain), Atoms(numbers=z, positions=chain[::-1].copy())]
    else:
        n = max(2 * len(numbers), 8)
        z = [numbers[k % len(numbers)] for k in range(n)]
        molecule = Atoms(numbers=z, positions=random_positions(n, 0.9 * cutoff))
        cell = 0.8 * cutoff * np.array([[1.0, 0.0, 0.0], [0.3, 1.1, 0.0], [0.2, -0.1, 0.9]])
        crystal = Atoms(numbers=z[::-1], positions=random_positions(n, 0.7 * cutoff), cell=cell, pbc=True)
        structures = [molecule, crystal]
    return collate([from_ase(s, cutoff, dtype=dtype, targets=False) for s in structures])


def exported_inputs(graph: Mapping[str, torch.Tensor], weight: torch.Tensor | None = None) -> tuple:
    """The file's inputs, in order, from a physnet graph (``weight`` defaults to ones)."""
    pos = graph[K.POS]
    shift = graph.get(K.EDGE_SHIFT)
    if shift is None:
        shift = torch.zeros(graph[K.EDGE_INDEX].shape[1], 3, dtype=torch.long, device=pos.device)
    if weight is None:
        weight = torch.ones(pos.shape[0], dtype=pos.dtype, device=pos.device)
    return (pos, graph[K.Z], graph[K.BATCH], graph[K.CELL], graph[K.EDGE_INDEX], shift, weight)


def _metadata(potential: Any, dtype: torch.dtype, device: torch.device) -> dict[str, str]:
    import physnet
    from physnet.units import energy_factor, length_factor

    model = potential.model
    return {
        "format": FORMAT,
        "model": str(model.hparams.get("name", type(model).__name__)),
        "species": " ".join(model.species.symbols),
        "atomic_numbers": " ".join(str(z) for z in model.species.atomic_numbers),
        "cutoff": repr(float(potential.cutoff)),
        "interaction_range": repr(float(potential.interaction_range)),
        "per_atom": "1" if model.per_atom and all(p.per_atom for p in potential.priors.values()) else "0",
        "n_beads": str(int(getattr(model, "n_beads", 0) or 0)),
        "energy_unit": potential.energy_unit,
        "length_unit": potential.length_unit,
        "energy_to_eV": repr(energy_factor(potential.energy_unit)),
        "length_to_angstrom": repr(length_factor(potential.length_unit)),
        "dtype": str(dtype).removeprefix("torch."),
        "device": device.type,
        "physnet_version": physnet.__version__,
        "torch_version": torch.__version__,
    }


def export_potential(
    potential: Any,
    path: str | os.PathLike,
    dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
    overwrite: bool = False,
    verbose: bool = False,
) -> Path:
    """Compile a potential to a ``.pt2`` file that runs with torch alone (see the module doc).

    Args:
        potential: a :class:`physnet.Potential`, or the path of a potential or checkpoint file.
        path: the ``.pt2`` file to write.
        dtype: float dtype of the file (default: the potential's); float64 for tight energy
            conservation and for comparisons, float32 for speed.
        device: where the compiled code runs ("cpu", or "cuda" on a GPU machine).
        overwrite: replace an existing file (refused otherwise).
        verbose: print each stage and its time.

    Returns:
        the path written. Tracing and compiling take about half a minute to a few minutes.
    """
    from torch.fx.experimental.proxy_tensor import make_fx

    from physnet.nn.tracing import exporting
    from physnet.potential import Potential

    path = Path(path)
    if path.suffix != ".pt2":
        raise ValueError(f"the exported file must end in .pt2 (AOTInductor package), got {path.name!r}")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; choose another name or pass overwrite=True (--overwrite)")
    if not isinstance(potential, Potential):
        potential = Potential.load(potential)
    if dtype is None:
        dtype = next(iter(potential.buffers())).dtype
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    device = torch.device(device)
    start = time.perf_counter()

    def say(message: str) -> None:
        if verbose:
            print(f"[{time.perf_counter() - start:6.1f} s] {message}", flush=True)

    frozen = potential.frozen(device=device, dtype=dtype)
    module = _ExportModule(frozen).eval()
    graph = {k: v.to(device) for k, v in example_graph(frozen, dtype).items()}
    inputs = exported_inputs(graph)
    metadata = _metadata(frozen, dtype, device)
    say(f"tracing {metadata['model']} with forces and virial (make_fx)")
    with exporting(), torch._dynamo.config.patch(capture_scalar_outputs=True):
        traced = make_fx(module, tracing_mode="symbolic", _allow_non_fake_inputs=True)(*inputs)
        n_beads = int(metadata["n_beads"])  # a bead model reshapes [N, 3] to [N / n_beads, n_beads, 3]
        n_atoms = n_beads * torch.export.Dim("n_molecules") if n_beads else torch.export.Dim("n_atoms")
        n_edges = torch.export.Dim("n_edges")
        n_graphs = torch.export.Dim("n_graphs")
        dynamic = (
            {0: n_atoms},
            {0: n_atoms},
            {0: n_atoms},
            {0: n_graphs},
            {1: n_edges},
            {0: n_edges},
            {0: n_atoms},
        )
        say("exporting with dynamic atoms, edges and graphs (torch.export)")
        program = torch.export.export(traced, inputs, dynamic_shapes=dynamic, strict=False)
    say("compiling (AOTInductor)")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch-internal deprecations, not the user's
        staged = Path(tmp) / path.name
        torch._inductor.aoti_compile_and_package(
            program, package_path=str(staged), inductor_configs={"aot_inductor.metadata": metadata}
        )
        os.replace(staged, path)
    say(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return path


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata of an exported file; ``ValueError`` if it is not a physnet export."""
    import zipfile

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no exported potential at {path}")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not a physnet export (not a .pt2 package); make one with physnet export")
    from torch._inductor.package import load_package

    try:
        metadata = load_package(str(path)).get_metadata()
    except Exception as error:  # a zip that is not an AOTInductor package
        raise ValueError(f"{path} is not a physnet export ({type(error).__name__}: {error})") from None
    if metadata.get("format") != FORMAT:
        raise ValueError(
            f"{path} is not a physnet export (format {metadata.get('format')!r}, expected {FORMAT!r})"
        )
    return metadata


_MALLOC_TUNED = False


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse instead of returning it to the system.

    The compiled code allocates its large per-call buffers afresh at every call. glibc serves
    blocks above 32 MB with ``mmap`` and unmaps them on ``free``, so the next call faults every
    4 KB page in again, which can take half the time of a large call (docs/benchmarks.md).
    ``mallopt(M_MMAP_MAX, 0)`` serves every block from the heap and ``mallopt(M_TRIM_THRESHOLD,
    1 GiB)`` keeps up to 1 GiB of freed heap, so the resident memory stays at its peak between MD
    steps. Process-wide, once; the LAMMPS pair style
    does the same. Returns whether the setting was applied (False off glibc, e.g. on macOS).
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_max = -1, -4  # glibc's <malloc.h>
        _MALLOC_TUNED = bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 1 << 30))
    except (OSError, AttributeError):  # not glibc
        return False
    return _MALLOC_TUNED


class ExportedPotential:
    """An exported file with the call signature of :class:`physnet.Potential`.

    Loading one calls :func:`keep_freed_memory` (process-wide: glibc keeps freed memory for the
    next call instead of faulting it in again).

    ``potential(graph)`` returns ``energy`` [G], ``atomic_energy`` [N], ``forces`` [N, 3] and,
    for graphs with a non-singular cell, ``stress`` [G, 3, 3] (ASE's sign), in the file's units.
    :class:`physnet.Calculator` accepts it (or a ``.pt2`` path) in place of a potential.

    Args:
        path: a file written by :func:`export_potential`.
        device: where to run it; must be the kind of device the file was compiled for.
    """

    training = False

    def __init__(self, path: str | os.PathLike, device: str | torch.device = "cpu") -> None:
        from physnet.data.graph import SpeciesIndex

        self.path = Path(path)
        self.metadata = read_metadata(self.path)
        self.device = torch.device(device)
        if self.device.type != self.metadata["device"]:
            raise ValueError(
                f"{self.path} was compiled for {self.metadata['device']}, not {self.device.type}; "
                f"export it again with --device {self.device.type}"
            )
        self.dtype = getattr(torch, self.metadata["dtype"])
        self.cutoff = float(self.metadata["cutoff"])
        self.interaction_range = float(self.metadata["interaction_range"])
        self.energy_unit = self.metadata["energy_unit"]
        self.length_unit = self.metadata["length_unit"]
        self.species_index = SpeciesIndex([int(z) for z in self.metadata["atomic_numbers"].split()])
        self.n_beads = int(self.metadata["n_beads"])
        index = self.device.index if self.device.index is not None else -1
        self._runner = torch._inductor.aoti_load_package(str(self.path), device_index=index)
        keep_freed_memory()

    @property
    def species(self) -> list[str]:
        return self.species_index.symbols

    def frozen(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> Any:
        """Itself: the file is already an inference copy. ``ValueError`` if another dtype or
        device is asked for (the compiled code has one of each)."""
        if dtype is not None and dtype != self.dtype:
            raise ValueError(
                f"{self.path} was exported in {self.metadata['dtype']}; use dtype={self.dtype} "
                f"or export again with --dtype {str(dtype).removeprefix('torch.')}"
            )
        if device is not None and torch.device(device).type != self.device.type:
            raise ValueError(f"{self.path} runs on {self.device.type}; it cannot move to {device}")
        return self

    def check_species(self, z: torch.Tensor) -> None:
        """``ValueError`` naming any element the file's model was not built for."""
        self.species_index.check(z)

    def check(self, graph: Mapping[str, torch.Tensor]) -> None:
        """Species, dtype and (CG bead models) bead count of a graph, checked once per structure."""
        self.check_species(graph[K.Z])
        if graph[K.POS].dtype != self.dtype:
            raise ValueError(
                f"positions are {graph[K.POS].dtype} but {self.path.name} was exported in "
                f"{self.metadata['dtype']}; build the graph with dtype={self.dtype}"
            )
        if self.n_beads and bool((graph[K.N_ATOMS] != self.n_beads).any()):
            raise ValueError(
                f"{self.path.name} is a CG model of {self.n_beads} beads per molecule; the graph has "
                f"{graph[K.N_ATOMS].tolist()}"
            )

    def __call__(
        self,
        graph: Mapping[str, torch.Tensor],
        compute_forces: bool = True,
        compute_stress: bool | None = None,
        check: bool = True,
    ) -> dict[str, torch.Tensor]:
        """Energies, forces and (periodic graphs) stress of a (batched) graph; see the class doc."""
        if check:
            self.check(graph)
        energy, atomic_energy, forces, virial = self._runner(*exported_inputs(graph))
        out = {K.ENERGY: energy, K.ATOMIC_ENERGY: atomic_energy}
        if compute_forces:
            out[K.FORCES] = forces
        cell = graph[K.CELL]
        if compute_stress is None:
            compute_stress = bool(graph[K.PBC].any(dim=1).all()) and bool(
                (torch.linalg.det(cell).abs() > 0).all()
            )
        if compute_stress:
            volume = torch.linalg.det(cell).abs()
            if not bool((volume > 0).all()):
                raise ValueError("stress needs a non-singular cell in every graph of the batch")
            out[K.STRESS] = -virial / volume.view(-1, 1, 1)
        return out

    def __repr__(self) -> str:
        m = self.metadata
        return (
            f"ExportedPotential({str(self.path)!r}, model={m['model']}, species={self.species}, "
            f"cutoff={self.cutoff}, dtype={m['dtype']}, device={m['device']})"
        )
