"""Particle trajectories for learned simulators: files, training windows, whole trajectories.

An ``.npz`` written by ``scripts/generate_mpm_water.py`` holds ``positions_<k>``
[frames, n_k, dim] (length unit), ``particle_type_<k>`` [n_k], ``bounds`` [dim, 2] and
``frame_dt`` (s). Train, validation and test are separate files of separate trajectories,
as in Sanchez-Gonzalez et al. (ICML 2020).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from physnet.data import keys as K

__all__ = [
    "Trajectories",
    "load_trajectories",
    "WindowDataset",
    "RolloutDataset",
    "collate_windows",
    "window_loaders",
    "n_windows",
]


@dataclass
class Trajectories:
    """Particle trajectories of one file.

    Attributes:
        positions: per trajectory [n_frames, n_particles, dim] float tensors (length unit).
        particle_type: per trajectory [n_particles] long tensors.
        bounds: [dim, 2] domain ``[[lo, hi], ...]`` (length unit).
        frame_dt: time between frames (s).
    """

    positions: list[torch.Tensor]
    particle_type: list[torch.Tensor]
    bounds: np.ndarray
    frame_dt: float

    def __len__(self) -> int:
        return len(self.positions)


def load_trajectories(path: str | os.PathLike, dtype: torch.dtype = torch.float32) -> Trajectories:
    """Read an ``.npz`` written by ``scripts/generate_mpm_water.py``; one-line errors for bad files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"trajectory file {path} does not exist; make it with scripts/generate_mpm_water.py --out {path}"
        )
    with np.load(path, allow_pickle=False) as raw:
        n = sum(1 for key in raw.files if key.startswith("positions_"))
        if n == 0:
            raise ValueError(f"{path} holds no positions_<k> arrays")
        missing = [key for key in ("bounds", "frame_dt") if key not in raw.files]
        missing += [f"particle_type_{k}" for k in range(n) if f"particle_type_{k}" not in raw.files]
        if missing:
            raise ValueError(f"{path} lacks {missing}; write it with scripts/generate_mpm_water.py")
        positions = [torch.as_tensor(raw[f"positions_{k}"], dtype=dtype) for k in range(n)]
        types = [torch.as_tensor(raw[f"particle_type_{k}"], dtype=torch.long) for k in range(n)]
        data = Trajectories(positions, types, np.asarray(raw["bounds"], dtype=float), float(raw["frame_dt"]))
    for k, (pos, ptype) in enumerate(zip(positions, types, strict=True)):
        if pos.dim() != 3 or ptype.shape != (pos.shape[1],):
            raise ValueError(
                f"{path}: trajectory {k} has positions {list(pos.shape)} and particle_type "
                f"{list(ptype.shape)}; need [frames, n, dim] and [n]"
            )
    return data


class WindowDataset(torch.utils.data.Dataset):
    """All windows of ``window + 1`` consecutive frames of some trajectories.

    Item ``(k, t)`` holds ``K.POS_HISTORY`` = frames ``t .. t + window - 1`` as [n, window, dim],
    ``K.NEXT_POS`` = frame ``t + window`` [n, dim] and ``K.Z`` [n]; with ``future = U > 0`` also
    ``K.FUTURE_POS`` = frames ``t + window + 1 .. t + window + U`` as [n, U, dim] (pushforward
    targets), and only windows that have them.

    Args:
        data: the trajectories.
        window: ``C``, the model's input length.
        stride: keep every ``stride``-th window start (1 = all).
        future: ``U``, frames after the target to include.
    """

    def __init__(self, data: Trajectories, window: int, stride: int = 1, future: int = 0) -> None:
        if future < 0:
            raise ValueError(f"future must be >= 0 frames, got {future}")
        self.data = data
        self.window = window
        self.future = future
        self.index = [
            (k, t)
            for k, pos in enumerate(data.positions)
            for t in range(0, pos.shape[0] - window - future, stride)
        ]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        k, t = self.index[item]
        pos = self.data.positions[k]
        out = {
            K.POS_HISTORY: pos[t : t + self.window].transpose(0, 1).contiguous(),  # [n, C, dim]
            K.NEXT_POS: pos[t + self.window],  # [n, dim]
            K.Z: self.data.particle_type[k],
        }
        if self.future:
            start = t + self.window + 1
            out[K.FUTURE_POS] = pos[start : start + self.future].transpose(0, 1).contiguous()  # [n, U, dim]
        return out


class RolloutDataset(torch.utils.data.Dataset):
    """Whole trajectories for validation rollouts: item ``k`` holds ``K.TRAJECTORY``
    [n_frames, n, dim] and ``K.Z`` [n] of trajectory ``k``; use ``DataLoader(..., batch_size=None)``.

    Args:
        data: the trajectories.
        n: how many (the first ``n``; 0 = all).
    """

    def __init__(self, data: Trajectories, n: int = 0) -> None:
        self.data = data
        self.n = len(data) if n <= 0 else min(n, len(data))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        return {K.TRAJECTORY: self.data.positions[k], K.Z: self.data.particle_type[k]}


def collate_windows(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Concatenate particles of several windows and add ``K.BATCH`` [n_total] and
    ``K.N_ATOMS`` [n_windows] (particles per window)."""
    out = {key: torch.cat([it[key] for it in items]) for key in items[0]}
    counts = torch.tensor([it[K.Z].shape[0] for it in items])
    out[K.BATCH] = torch.repeat_interleave(torch.arange(len(items)), counts)
    out[K.N_ATOMS] = counts
    return out


def n_windows(batch: dict[str, torch.Tensor]) -> int:
    """Windows in a collated batch, from a shape where it can (no host sync in a training step)."""
    return batch[K.N_ATOMS].shape[0] if K.N_ATOMS in batch else int(batch[K.BATCH][-1]) + 1


def window_loaders(
    train: Trajectories,
    window: int,
    batch_size: int,
    seed: int,
    future: int = 0,
    valid: Trajectories | None = None,
    val_stride: int = 1,
    val_rollouts: int = 0,
) -> tuple[torch.utils.data.DataLoader, object]:
    """Loaders of a learned simulator's training.

    Returns:
        the training loader (shuffled by a generator seeded with ``seed``; windows with
        ``future`` frames after the target) and, with ``valid``, the validation loader of every
        ``val_stride``-th window, as a list ``[windows, rollouts]`` when ``val_rollouts`` > 0
        (the first ``val_rollouts`` whole trajectories, :class:`RolloutDataset`); else None.
    """
    generator = torch.Generator().manual_seed(seed)
    train_set = WindowDataset(train, window, future=future)
    loader = torch.utils.data.DataLoader
    train_loader = loader(
        train_set, batch_size=batch_size, shuffle=True, collate_fn=collate_windows, generator=generator
    )
    if valid is None:
        return train_loader, None
    val_set = WindowDataset(valid, window, stride=val_stride)
    val_loader = loader(val_set, batch_size=batch_size, collate_fn=collate_windows)
    if not val_rollouts:
        return train_loader, val_loader
    return train_loader, [val_loader, loader(RolloutDataset(valid, val_rollouts), batch_size=None)]
