"""Lightning checkpoints written atomically: a kill during a save leaves the previous file."""

from __future__ import annotations

import os
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from physnet.errors import atomic_write

__all__ = ["AtomicCheckpointIO"]


class AtomicCheckpointIO(TorchCheckpointIO):
    """:class:`TorchCheckpointIO` whose saves go to a temporary file in the checkpoint's folder,
    flushed to disk and renamed over the old file (``os.replace``), so that ``last.ckpt`` is always
    a whole checkpoint: the new one or, after a kill (SIGKILL, a node lost) during the save, the
    previous one. Lightning's own save opens the target for writing and truncates it first."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        atomic_write(path, lambda tmp: torch.save(checkpoint, tmp))
