"""Is data loading the bottleneck? Data-loader frames/s next to training-step frames/s.

Reads the shared MD17 ethanol file (or ``--data``), builds the graph dataset once,
then measures, on the same train split and batch size:

- the DataLoader alone (collate of pre-built graphs), frames/s;
- one training step (forward, forces by autograd with create_graph, force + energy
  loss, backward, AdamW step) of SchNet, frames/s;

and prints both with their ratio. Medians over several repeats.

    .venv/bin/python scripts/bench_training.py [--threads 1] [--batch-size 10]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

import physnet
from physnet.data import keys as K
from physnet.data.datasets import GraphDataset, make_loader, make_split, read_frames

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "md17_ethanol_2000.xyz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--steps", type=int, default=100, help="training steps to time")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not Path(args.data).is_file():
        raise SystemExit(f"{args.data} not found: pass --data FILE (any file physnet.data.read_frames reads)")

    t0 = time.perf_counter()
    frames = read_frames(args.data)
    t1 = time.perf_counter()
    dataset = GraphDataset(frames, cutoff=5.0, progress=False)
    t2 = time.perf_counter()
    split = make_split(len(dataset), 0.5, 0.05)
    rate = len(dataset) / (t2 - t1)
    print(
        f"{len(dataset)} frames: read {t1 - t0:.2f} s, graphs built in {t2 - t1:.2f} s ({rate:.0f} frames/s)"
    )
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")

    loader = make_loader(dataset, split["train"], args.batch_size, shuffle=True)
    load_rates = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        n = sum(int(b[K.N_ATOMS].shape[0]) for b in loader)
        load_rates.append(n / (time.perf_counter() - start))

    species = sorted({int(z) for a in frames for z in a.numbers})
    model = physnet.models.build("schnet", species=species, n_features=128, n_filters=128, n_rbf=20)
    potential = physnet.Potential(model).train()
    optimizer = torch.optim.AdamW(potential.parameters(), lr=1e-4)
    batches = [b for _, b in zip(range(args.steps), loader, strict=False)]
    step_rates = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for batch in batches:
            out = potential(batch)
            loss = (out[K.FORCES] - batch[K.FORCES]).pow(2).mean() + 1e-6 * (
                out[K.ENERGY] - batch[K.ENERGY]
            ).pow(2).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        step_rates.append(len(batches) * args.batch_size / (time.perf_counter() - start))

    load, step = float(np.median(load_rates)), float(np.median(step_rates))
    print(f"batch size {args.batch_size}, medians of {args.repeats}:")
    print(f"  data loader          {load:10.0f} frames/s")
    print(f"  SchNet training step {step:10.0f} frames/s  ({1e3 * args.batch_size / step:.1f} ms/step)")
    share = 100 * step / load
    print(f"  loader / step        {load / step:10.1f}x   (loading is {share:.1f}% of a step's time)")


if __name__ == "__main__":
    main()
