"""Scatter-sum, the one reduction used by every model.

Uses ``torch_scatter`` (the optional extra ``physnet[scatter]``) when it is
installed and ``PHYSNET_SCATTER`` is not ``torch``; otherwise torch's own
``index_add_``. Both give the same numbers (``tests/nn/test_scatter.py``). On the
2-core CPU used for development ``index_add_`` was 1.1-1.6x faster, so set
``PHYSNET_SCATTER=torch`` to force it; ``PHYSNET_SCATTER=torch_scatter`` demands
torch_scatter and fails if it is missing.
"""

from __future__ import annotations

import os

import torch

__all__ = ["scatter_sum", "BACKEND"]


def _choose_backend() -> str:
    wanted = os.environ.get("PHYSNET_SCATTER", "auto")
    if wanted not in {"auto", "torch", "torch_scatter"}:
        raise ValueError(f"PHYSNET_SCATTER={wanted!r}; use 'auto', 'torch' or 'torch_scatter'")
    if wanted == "torch":
        return "torch"
    try:
        import torch_scatter  # noqa: F401
    except ImportError:
        if wanted == "torch_scatter":
            raise ImportError(
                "PHYSNET_SCATTER=torch_scatter but torch_scatter is not installed; "
                "pip install 'physnet[scatter]' or unset PHYSNET_SCATTER"
            ) from None
        return "torch"
    return "torch_scatter"


BACKEND: str = _choose_backend()


def scatter_sum_torch(src: torch.Tensor, index: torch.Tensor, dim_size: int) -> torch.Tensor:
    """Sum rows of ``src`` [n, ...] into ``dim_size`` bins given by ``index`` [n] (torch only)."""
    out = torch.zeros((dim_size,) + src.shape[1:], dtype=src.dtype, device=src.device)
    return out.index_add_(0, index, src)


def scatter_sum(src: torch.Tensor, index: torch.Tensor, dim_size: int) -> torch.Tensor:
    """Sum rows of ``src`` [n, ...] into ``dim_size`` bins given by ``index`` [n].

    Returns:
        [dim_size, ...]; bins that receive nothing are zero.
    """
    if BACKEND == "torch_scatter":
        import torch_scatter

        return torch_scatter.scatter_sum(src, index, dim=0, dim_size=dim_size)
    return scatter_sum_torch(src, index, dim_size)
