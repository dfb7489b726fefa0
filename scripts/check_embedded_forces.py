"""Check embedded data sets against their own engine: forces vs central finite differences.

For each set, ``--frames`` frames are drawn at random (``numpy.random.default_rng(seed)``);
on each, the engine that made the set (:func:`physnet.data.embedded.calculator`) gives
``-(E(x + h) - E(x - h)) / 2h`` for every Cartesian component (or ``--components`` random
ones), compared with the stored forces. Periodic sets also compare the stored stress with
``(E(ε + h) - E(ε - h)) / (2h V)`` for the 6 symmetric strain components.

Example::

    python scripts/check_embedded_forces.py                   # all sets, 3 frames each
    python scripts/check_embedded_forces.py --sets ethanol_gfn2 --frames 5
"""

from __future__ import annotations

import argparse
import os
from typing import Any


def check_set(
    name: str, n_frames: int = 3, h: float = 1e-3, n_components: int | None = None, seed: int = 0
) -> dict[str, Any]:
    """:func:`physnet.data.embedded.check_set`; the CG set's all-atom OpenMM forces on beads are
    checked by its generator (``generate_alanine_cg.py``, next to this script)."""
    from physnet.data import embedded

    if embedded.info(name).get("kind") == "cg_md":
        from generate_alanine_cg import check_forces  # this script's folder is importable

        return check_forces(name, n_frames=n_frames, h=h, seed=seed)
    return embedded.check_set(name, n_frames, h, n_components, seed)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sets", nargs="*", default=None, help="set names (default: all)")
    p.add_argument("--frames", type=int, default=3, help="frames per set (default 3)")
    p.add_argument("--h", type=float, default=1e-3, help="displacement, Å (default 1e-3)")
    p.add_argument("--components", type=int, default=None, help="random components per frame (default all)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from physnet.data import embedded

    for name in args.sets or embedded.available():
        r = check_set(name, args.frames, args.h, args.components, args.seed)
        extra = (
            f", stress max err {r['stress_max_abs_error']:.2e} eV/Å^3" if "stress_max_abs_error" in r else ""
        )
        print(
            f"{name}: frames {r['frames']}: force max |FD - stored| {r['force_max_abs_error']:.2e} eV/Å"
            + (f" (max |F| {r['force_max_abs']:.2f})" if "force_max_abs" in r else "")
            + (f", |E - stored| {r['energy_abs_error']:.1e} eV" if "energy_abs_error" in r else "")
            + extra,
            flush=True,
        )


if __name__ == "__main__":
    main()
