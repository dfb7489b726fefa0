"""Uncertainty in MD: watch a committee's force deviation, keep the frames it is unsure of.

With a committee (:mod:`physnet.committee`) as the calculator, every MD step comes with the
largest per-atom force deviation max_i sigma_F,i (``atoms.calc.results["max_forces_std"]``,
eV/Å). :class:`UncertaintyMonitor`, called at each log interval,

- logs it (with the energy deviation, step, potential energy and temperature) to a CSV file;
- writes the frames above ``select`` eV/Å to an extended-XYZ file of unlabelled structures,
  ready to be labelled by the reference method and added to the training set (the
  active-learning step, as DP-GEN's model-deviation selection, Zhang et al., Comput. Phys.
  Commun. 253, 107206 (2020));
- raises :class:`UncertaintyExceeded` above ``stop`` eV/Å (after writing that frame), so the
  run ends where the potential no longer knows what it is doing.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from ase import Atoms

__all__ = ["UncertaintyMonitor", "UncertaintyExceeded"]


class UncertaintyExceeded(RuntimeError):
    """The committee's largest per-atom force deviation passed the stop threshold at ``step``."""

    def __init__(self, step: int, value: float, threshold: float) -> None:
        super().__init__(
            f"step {step}: largest per-atom force deviation {value:.3g} eV/Å > {threshold:g} eV/Å"
        )
        self.step = step
        self.value = value
        self.threshold = threshold


class UncertaintyMonitor:
    """Log, select and stop on a committee's force deviation (see the module docstring).

    Args:
        log_path: CSV file for ``step,time_fs,epot_eV,temperature_K,energy_std_eV,max_force_std_eV_A``.
        frames_path: extended-XYZ file for the selected frames (positions, numbers, cell, pbc and
            ``info`` step / max_force_std_eV_A; no energies or forces).
        stop: stop above this largest per-atom force deviation (eV/Å); None never stops.
        select: write frames above this (eV/Å); None: the ``stop`` threshold.
        dt: time step in fs (for the log's time column).
    """

    def __init__(
        self,
        log_path: str | os.PathLike,
        frames_path: str | os.PathLike,
        stop: float | None = None,
        select: float | None = None,
        dt: float = 1.0,
    ) -> None:
        for name, value in (("--max-force-uncertainty", stop), ("--select-force-uncertainty", select)):
            if value is not None and not (value > 0 and np.isfinite(value)):
                raise ValueError(f"{name} must be a force deviation > 0 eV/Å, got {value}")
        self.stop = stop
        self.select = select if select is not None else stop
        self.dt = float(dt)
        self.log_path = Path(log_path)
        self.frames_path = Path(frames_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.write_text("step,time_fs,epot_eV,temperature_K,energy_std_eV,max_force_std_eV_A\n")
        self.n_selected = 0
        self.values: list[float] = []

    def check(self, atoms: Atoms, step: int) -> float:
        """Log the current step (``atoms`` must have been calculated by a committee), write it to
        the frames file above ``select``, raise :class:`UncertaintyExceeded` above ``stop``;
        returns the largest per-atom force deviation in eV/Å."""
        results = atoms.calc.results
        if "max_forces_std" not in results:
            raise ValueError(
                "the force deviation needs a committee: give several potentials or a committee directory"
            )
        value = float(results["max_forces_std"])
        self.values.append(value)
        epot = float(results["energy"])
        with self.log_path.open("a") as f:
            f.write(
                f"{step},{step * self.dt:g},{epot:.8g},{atoms.get_temperature():.6g},"
                f"{float(results['energy_std']):.6g},{value:.6g}\n"
            )
        if self.select is not None and value > self.select:
            self._write(atoms, step, value)
        if self.stop is not None and value > self.stop:
            raise UncertaintyExceeded(step, value, self.stop)
        return value

    def _write(self, atoms: Atoms, step: int, value: float) -> None:
        from ase.io import write

        frame = Atoms(atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
        frame.info.update({"step": int(step), "max_force_std_eV_A": value})
        write(self.frames_path, frame, format="extxyz", append=self.n_selected > 0)
        self.n_selected += 1
