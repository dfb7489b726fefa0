"""Speed of a committee in ASE: members one after another ("loop") vs stacked with
torch.func.vmap ("vmap"), and a single member for reference.

Untrained SchNets (speed does not depend on the weights), float32, 1 thread by default; calls
alternate between the variants, each timed on a fresh displacement of the structure, medians
reported. Structures: ethanol (9 atoms, RDKit) and one frame of the embedded cu_emt set
(108 Cu atoms, periodic, with stress).

    python scripts/bench_committee.py --members 4 --repeats 30
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import physnet
from physnet.committee import Committee


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--n-features", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from physnet.data import embedded

    systems = {
        "ethanol (9 atoms)": physnet.data.from_smiles("CCO")[0],
        "Cu fcc (108 atoms, periodic)": embedded.load("cu_emt")[0],
    }
    print(
        f"{args.members} SchNet members (n_features {args.n_features}, 3 interactions), float32, "
        f"{torch.get_num_threads()} thread(s), {args.device}, median of {args.repeats} alternating calls"
    )
    for name, atoms in systems.items():
        species = sorted(set(atoms.get_chemical_symbols()))
        members = []
        for seed in range(args.members):
            torch.manual_seed(seed)
            model = physnet.models.build(
                "schnet", species=species, n_features=args.n_features, n_filters=args.n_features, n_rbf=20
            )
            members.append(physnet.Potential(model))
        calcs = {
            "one member": physnet.Calculator(members[0], device=args.device),
            "loop": physnet.Calculator(Committee(members, mode="loop"), device=args.device),
            "vmap": physnet.Calculator(Committee(members, mode="vmap"), device=args.device),
        }
        rng = np.random.default_rng(0)
        times: dict[str, list[float]] = {k: [] for k in calcs}
        base = atoms.positions.copy()
        for rep in range(args.repeats + 3):
            for key, calc in calcs.items():
                a = atoms.copy()
                a.positions = base + rng.normal(scale=0.01, size=base.shape)
                a.calc = calc
                start = time.perf_counter()
                a.get_forces()
                if a.pbc.any():
                    a.get_stress()
                elapsed = time.perf_counter() - start
                if rep >= 3:  # warm-up
                    times[key].append(elapsed)
        med = {k: 1e3 * float(np.median(v)) for k, v in times.items()}
        print(
            f"{name}: one member {med['one member']:.2f} ms, loop {med['loop']:.2f} ms, "
            f"vmap {med['vmap']:.2f} ms "
            f"(vmap / loop = {med['vmap'] / med['loop']:.2f})"
        )


if __name__ == "__main__":
    main()
