"""Print physnet's symmetry / gradient test-kit figures for a registered model.

    .venv/bin/python scripts/kit_report.py --model schnet [--hparams '{"n_interactions": 2}']

Runs :func:`physnet.testing.run_kit` on the kit's reference structures (RDKit
ethanol and a triclinic CuAu cell smaller than twice the cutoff) in float64 and
float32 and prints every relative error next to its tolerance.
"""

from __future__ import annotations

import argparse
import json

import torch

import physnet
from physnet.testing import TOLERANCES, reference_structures, run_kit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="schnet", choices=physnet.models.available())
    parser.add_argument("--hparams", default="{}", help="JSON dict of model keyword arguments")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    model = physnet.models.build(args.model, species=["H", "C", "O", "Cu", "Au"], **json.loads(args.hparams))
    potential = physnet.Potential(model)
    molecule, crystal = reference_structures(args.seed)
    reports = {
        dtype: run_kit(potential, molecule, crystal, dtype=dtype) for dtype in (torch.float64, torch.float32)
    }
    print(f"test kit for {args.model}: relative errors (tolerance float64 / float32)")
    print(f"{'check':30s} {'float64':>10s} {'float32':>10s}")
    for key in reports[torch.float64]:
        kind = (
            "fd"
            if "_fd" in key
            else "batch"
            if key.startswith(("batch", "additivity"))
            else "cross"
            if (key.startswith("cross"))
            else "symmetry"
        )
        tol = f"({TOLERANCES[torch.float64][kind]:.0e} / {TOLERANCES[torch.float32][kind]:.0e})"
        print(f"{key:30s} {reports[torch.float64][key]:10.2e} {reports[torch.float32][key]:10.2e}  {tol}")


if __name__ == "__main__":
    main()
