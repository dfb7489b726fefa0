"""Scatter-sum, the one reduction used by every model.

Uses ``torch_scatter`` (the optional extra ``physnet[scatter]``) when it is
installed and ``PHYSNET_SCATTER`` is not ``torch``; otherwise torch's own
``index_add_``. Both give the same numbers (``tests/nn/test_scatter.py``). On the
2-core CPU used for development ``index_add_`` was faster (docs/benchmarks.md), so set
``PHYSNET_SCATTER=torch`` to force it; ``PHYSNET_SCATTER=torch_scatter`` demands
torch_scatter and fails if it is missing.
"""

from __future__ import annotations

import os

import torch

__all__ = ["scatter_sum", "scatter_max", "segment_softmax", "BACKEND"]


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
    return out.index_add(0, index, src)  # out of place: works under torch.func.vmap


def scatter_sum(src: torch.Tensor, index: torch.Tensor, dim_size: int) -> torch.Tensor:
    """Sum rows of ``src`` [n, ...] into ``dim_size`` bins given by ``index`` [n].

    Returns:
        [dim_size, ...]; bins that receive nothing are zero.
    """
    if BACKEND == "torch_scatter":
        import torch_scatter

        return torch_scatter.scatter_sum(src, index, dim=0, dim_size=dim_size)
    return scatter_sum_torch(src, index, dim_size)


def scatter_max(src: torch.Tensor, index: torch.Tensor, dim_size: int) -> torch.Tensor:
    """Maximum of the rows of ``src`` [n, ...] in each of ``dim_size`` bins given by ``index`` [n].

    Built on torch's ``scatter_reduce`` (``"amax"``); gradients flow to the maximal entries.

    Returns:
        [dim_size, ...]; bins that receive nothing are ``-inf``.

    >>> scatter_max(torch.tensor([1.0, 3.0, 2.0]), torch.tensor([0, 0, 2]), 3).tolist()
    [3.0, -inf, 2.0]
    """
    out = torch.full((dim_size,) + src.shape[1:], float("-inf"), dtype=src.dtype, device=src.device)
    idx = index.view((-1,) + (1,) * (src.dim() - 1)).expand_as(src)
    return out.scatter_reduce(0, idx, src, reduce="amax", include_self=True)


def segment_softmax(
    logits: torch.Tensor, index: torch.Tensor, dim_size: int, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Softmax of ``logits`` [n, ...] over the rows that share a bin of ``index`` [n].

    ``alpha_k = w_k exp(z_k) / sum_{l: index_l = index_k} w_l exp(z_l)`` with optional non-negative
    weights ``weight`` [n] (e.g. a smooth cutoff envelope, so that a row whose weight goes to zero
    leaves the softmax continuously; ``weight = 1`` is the plain softmax). The per-bin maximum is
    subtracted for stability and detached (the softmax does not depend on it, so gradients are
    exact). A bin whose weights are all zero gives zeros, not NaN.

    Returns:
        [n, ...] attention weights; within each bin they sum to 1 (or to 0 if all weights are 0).

    >>> a = segment_softmax(torch.tensor([0.0, 0.0, 5.0]), torch.tensor([0, 0, 1]), 2)
    >>> a.tolist()
    [0.5, 0.5, 1.0]
    """
    shift = scatter_max(logits.detach(), index, dim_size)[index]  # [n, ...]
    e = torch.exp(logits - shift)  # [n, ...], entries in (0, 1]
    if weight is not None:
        e = e * weight.view((-1,) + (1,) * (logits.dim() - 1))
    den = scatter_sum(e, index, dim_size)[index]  # [n, ...]
    return e / torch.where(den > 0, den, torch.ones_like(den))
