"""Tabulated radial functions for inference: piecewise cubic Hermite interpolation.

A frozen network that maps a distance r to a vector, such as SchNet's filter-generating
networks W_t(r) (Schütt et al., J. Chem. Phys. 148, 241722 (2018), Sec. II.D), is a fixed
smooth function of one variable once training is over. :class:`HermiteTable` samples it and
its derivative on a uniform grid and evaluates the cubic Hermite interpolant

    f(r) = h00(s) f_k + h10(s) dx f'_k + h01(s) f_{k+1} + h11(s) dx f'_{k+1},   s = r/dx - k,

with h00 = 2s^3 - 3s^2 + 1, h10 = s^3 - 2s^2 + s, h01 = -2s^3 + 3s^2, h11 = s^3 - s^2
(e.g. Fritsch & Carlson, SIAM J. Numer. Anal. 17, 238 (1980), eq. 2), stored as the
coefficients of 1, s, s^2, s^3 per interval (no cancellation in a float32 table's slopes).
The interpolant and its first derivative are continuous, so forces are the exact gradient
of the tabulated energy and MD conserves it; the error is O(dx^4) in f and O(dx^3) in f'. The
grid is refined at build time until the measured errors of f and f' are below the requested
tolerance. DeePMD-kit's "model compression" tabulates its embedding networks the same way,
for the same reason: a few table reads replace two dense layers per pair.

Inference only: the backward pass is first order (forces, stress), not twice differentiable.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from physnet.nn.tracing import is_exporting

__all__ = ["HermiteTable", "hermite_polynomial", "tabulated_convolution"]


# [1, s, s^2, s^3] @ _POWERS_TO_BASIS = [1, s, s^2, s^3, 0, 1, 2 s, 3 s^2]: value and d/ds rows
_POWERS_TO_BASIS = torch.tensor(
    [
        [1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0],
        [0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 2.0, 0.0],
        [0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 3.0],
        [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0],
    ]
)
_EXPONENTS = torch.arange(4.0)
_ROW_OFFSETS = torch.arange(4)


def _hermite(
    x: torch.Tensor, table: torch.Tensor, inv_dx: float, slopes: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Interpolated f(x) [n, D] and, if ``slopes``, f'(x) [n, D] (both 0 for x >= x_max).

    ``table`` [n_rows + 1, 4 D] holds per-interval coefficients and a last row of zeros that
    every x >= x_max selects, so no mask is needed (NaN inputs give NaN). The weighted sums of
    coefficient rows run as one ``embedding_bag`` (gather and sum fused, no [n, 4, D]
    temporary), faster on the CPU than gather + bmm (docs/benchmarks.md).
    """
    n_rows = table.shape[0] - 1
    d = table.shape[1] // 4
    n_out = 2 if slopes else 1
    powers, to_basis, offsets = _constants(table, inv_dx, n_out)
    u = x * inv_dx
    k = u.floor().nan_to_num_(nan=n_rows).clamp_(0, n_rows)
    basis = ((u - k).unsqueeze(-1) ** powers) @ to_basis  # [n, 4 n_out]
    rows = k.long().unsqueeze(-1) * 4 + offsets  # [n, 4 n_out]
    out = torch.nn.functional.embedding_bag(
        rows.view(-1, 4), table.view(-1, d), per_sample_weights=basis.view(-1, 4), mode="sum"
    ).view(-1, n_out, d)  # [n, n_out, D]
    return out[:, 0], (out[:, 1] if slopes else None)


_CONSTANTS: dict[tuple, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}


def _constants(
    table: torch.Tensor, inv_dx: float, n_out: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Exponents [4], basis matrix [4, 4 n_out] (slope columns times 1/dx) and row offsets
    [4 n_out] for :func:`_hermite`, cached per dtype, device, spacing and output count (not while
    traced for export: the tensors made then are the tracer's, not real ones)."""
    key = (table.dtype, table.device, inv_dx, n_out)
    if key not in _CONSTANTS or is_exporting():
        to_basis = _POWERS_TO_BASIS[:, : 4 * n_out].double()  # scaled in float64, then cast
        to_basis[:, 4:] *= inv_dx  # d/dx = d/ds / dx
        constants = (_EXPONENTS.to(table), to_basis.to(table), _ROW_OFFSETS.repeat(n_out).to(table.device))
        if is_exporting():
            return constants
        _CONSTANTS[key] = constants
    return _CONSTANTS[key]


def hermite_polynomial(x: torch.Tensor, table: torch.Tensor, inv_dx: float) -> torch.Tensor:
    """f(x) [n, D] from a coefficient table [n_rows + 1, 4 D] in plain differentiable tensor ops.

    The same interpolant as :class:`HermiteTable` (Horner's rule on the per-interval coefficients
    of 1, s, s^2, s^3), with the derivative left to autograd instead of a custom backward: the form
    a compiler can trace and fuse with the convolution that consumes it (:mod:`physnet.export`),
    without materialising the [n, D] filters in memory.
    """
    n_rows = table.shape[0] - 1
    coefficients = table.view(n_rows + 1, 4, -1)  # [rows, 4, D]
    u = x * inv_dx
    k = u.detach().floor().clamp(0, n_rows)  # interval; the last row (zeros) for x >= x_max
    s = (u - k).unsqueeze(-1)  # [n, 1], differentiable in x
    c = coefficients.index_select(0, k.long())  # [n, 4, D]
    return c[:, 0] + s * (c[:, 1] + s * (c[:, 2] + s * c[:, 3]))


class _HermiteEval(torch.autograd.Function):
    """f(x) [n, D] from the table; saves f'(x) for the backward pass (first order only)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, table: torch.Tensor, inv_dx: float):
        out, grad = _hermite(x, table, inv_dx, slopes=ctx.needs_input_grad[0])
        if grad is not None:
            ctx.save_for_backward(grad)
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        if torch.is_grad_enabled():  # create_graph=True: a second derivative was asked for
            raise RuntimeError(
                "a tabulated function (physnet.nn.tabulate) is differentiable once only (forces, "
                "stress); for Hessians or training use the potential itself, not its frozen() copy"
            )
        (grad,) = ctx.saved_tensors
        return (grad_out * grad).sum(-1), None, None


class HermiteTable(torch.nn.Module):
    """Cubic Hermite table of a smooth vector function f: [0, x_max) -> R^D.

    Args:
        fn: maps x [n] (float64) to f(x) [n, D]; row i may depend on x[i] only. It is
            differentiated once (forward mode) to get the slopes.
        x_max: end of the range; inputs at or beyond it give 0 (a cutoff).
        dtype: dtype of the table and of the outputs (float32 for MD).
        spacing: initial grid spacing; halved until the error is below ``tol``.
        tol: bound on max |f_table - f| / max |f| and on max |f'_table - f'| / max |f'| at
            points midway between grid nodes (where the Hermite error peaks), in float64.
        max_rows: stop refining at this many grid intervals and raise.

    Attributes:
        error: measured relative errors ``{"value": ..., "slope": ...}`` at the final spacing.

    >>> table = HermiteTable(lambda x: torch.stack([torch.sin(x), torch.exp(-x)], -1), 3.0,
    ...                      torch.float64, tol=1e-9)
    >>> x = torch.tensor([0.3, 1.7], dtype=torch.float64)
    >>> bool(torch.allclose(table(x), torch.stack([torch.sin(x), torch.exp(-x)], -1), atol=1e-9))
    True
    """

    def __init__(
        self,
        fn: Callable[[torch.Tensor], torch.Tensor],
        x_max: float,
        dtype: torch.dtype = torch.float32,
        spacing: float | None = None,
        tol: float = 1e-7,
        max_rows: int = 1 << 16,
    ) -> None:
        super().__init__()
        if x_max <= 0:
            raise ValueError(f"x_max must be > 0, got {x_max}")
        self.x_max = float(x_max)
        n = max(8, math.ceil(self.x_max / spacing)) if spacing else 256
        while True:
            dx = self.x_max / n
            grid = torch.arange(n + 1, dtype=torch.float64) * dx  # [n + 1]
            values, slopes = _value_and_slope(fn, grid)  # [n + 1, D] each
            table = _cubic_coefficients(values, dx * slopes)  # [n + 1, 4 D], last row zero
            mid = grid[:-1] + 0.5 * dx  # worst case of the cubic error term s^2 (1 - s)^2
            probe = torch.cat([mid, grid[:-1] + 0.2113 * dx])
            exact, exact_slope = _value_and_slope(fn, probe)
            approx, approx_slope = _hermite(probe, table, 1.0 / dx, slopes=True)
            assert approx_slope is not None
            err = float((approx - exact).abs().max() / exact.abs().max().clamp(min=1e-300))
            slope_err = float(
                (approx_slope - exact_slope).abs().max() / exact_slope.abs().max().clamp(min=1e-300)
            )
            if (err <= tol and slope_err <= tol) or 2 * n > max_rows:
                break
            n *= 2
        if err > tol or slope_err > tol:
            raise ValueError(
                f"HermiteTable: error {err:.2e} (slope {slope_err:.2e}) above tol {tol:.1e} with "
                f"{n} intervals; the function is not smooth enough to tabulate (raise max_rows or tol)"
            )
        self.error = {"value": err, "slope": slope_err}
        self.n_rows = n
        self.inv_dx = n / self.x_max
        self.register_buffer("table", table.to(dtype), persistent=False)  # [n + 1, 4 D]

    @property
    def width(self) -> int:
        """D, the length of the tabulated vector."""
        return self.table.shape[1] // 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [n] -> f(x) [n, D] (0 where x >= x_max); differentiable once in x."""
        return _HermiteEval.apply(x.to(self.table.dtype), self.table, self.inv_dx)

    def block(self, index: int, n_blocks: int) -> torch.Tensor:
        """The coefficient table [n_rows + 1, 4 D / n_blocks] of outputs block ``index`` of
        ``n_blocks`` equal consecutive blocks (contiguous copy, for :func:`tabulated_convolution`)."""
        d = self.width // n_blocks
        rows = self.table.view(self.table.shape[0], 4, n_blocks, d)
        return rows[:, :, index].reshape(self.table.shape[0], 4 * d).contiguous()

    def extra_repr(self) -> str:
        return f"x_max={self.x_max}, rows={self.n_rows}, width={self.width}, error={self.error['value']:.1e}"


class _TabulatedConvolution(torch.autograd.Function):
    """out[i_e] += y[j_e] * W(r[p_e]) over edges e, in chunks (see tabulated_convolution)."""

    @staticmethod
    def forward(ctx, y, r, table, inv_dx, centre, neighbour, pair, chunk):
        out = torch.zeros_like(y)
        for start in range(0, centre.shape[0], chunk):
            stop = start + chunk
            w, _ = _hermite(r.index_select(0, pair[start:stop]), table, inv_dx, slopes=False)
            out.index_add_(0, centre[start:stop], y.index_select(0, neighbour[start:stop]).mul_(w))
        ctx.save_for_backward(y, r, table, centre, neighbour, pair)
        ctx.inv_dx, ctx.chunk = inv_dx, chunk
        return out

    @staticmethod
    def backward(ctx, grad_out):
        if torch.is_grad_enabled():
            raise RuntimeError(
                "a tabulated function (physnet.nn.tabulate) is differentiable once only (forces, "
                "stress); for Hessians or training use the potential itself, not its frozen() copy"
            )
        y, r, table, centre, neighbour, pair = ctx.saved_tensors
        grad_y = torch.zeros_like(y) if ctx.needs_input_grad[0] else None
        grad_r = torch.zeros_like(r) if ctx.needs_input_grad[1] else None
        for start in range(0, centre.shape[0], ctx.chunk):
            stop = start + ctx.chunk
            p = pair[start:stop]
            w, dw = _hermite(r.index_select(0, p), table, ctx.inv_dx, slopes=grad_r is not None)
            g = grad_out.index_select(0, centre[start:stop])  # [m, F]
            j = neighbour[start:stop]
            if grad_y is not None:
                grad_y.index_add_(0, j, g * w)
            if grad_r is not None:
                grad_r.index_add_(0, p, (g.mul_(y.index_select(0, j)).mul_(dw)).sum(-1))
        return grad_y, grad_r, None, None, None, None, None, None


def tabulated_convolution(
    y: torch.Tensor,
    r: torch.Tensor,
    table: torch.Tensor,
    inv_dx: float,
    edge_index: torch.Tensor,
    pair: torch.Tensor | None = None,
    chunk: int = 8192,
) -> torch.Tensor:
    """Continuous-filter convolution out_i = sum_j y_j * W(r_ij) with W from a Hermite table.

    Fuses the table lookup, the gather, the product and the scatter over chunks of edges,
    forward and backward, so that no [n_edges, F] tensor is ever stored: the memory is that of
    the atoms' features and the distances, and every temporary is a cache-sized chunk. For a
    13,500-atom Cu box (578k edges) the unfused ops spent most of their time faulting in fresh
    300 MB buffers. Differentiable once, in ``y`` and ``r``.

    Args:
        y: [n_atoms, F] features of the neighbours.
        r: [n_pairs] distances (or [n_edges] when ``pair`` is None).
        table: [n_rows + 1, 4 F] coefficients (:meth:`HermiteTable.block`).
        inv_dx: 1 / grid spacing of the table.
        edge_index: [2, n_edges], row 0 the receiving atom i, row 1 the neighbour j.
        pair: [n_edges] index into ``r`` of every edge (:func:`physnet.data.neighbors.edge_pairs`).
        chunk: edges per block.

    Returns:
        [n_atoms, F].
    """
    if pair is None:
        pair = torch.arange(edge_index.shape[1], device=edge_index.device)
    return _TabulatedConvolution.apply(
        y, r.to(table.dtype), table, inv_dx, edge_index[0], edge_index[1], pair, int(chunk)
    )


def _cubic_coefficients(values: torch.Tensor, slopes: torch.Tensor) -> torch.Tensor:
    """Per interval, [a, b, c, d] of f(s) = a + b s + c s^2 + d s^3 on s in [0, 1].

    From node values p [n + 1, D] and scaled slopes m = dx f' [n + 1, D] (the Hermite form
    rewritten in powers of s). Computed in float64 and stored as coefficients rather than node
    values, so a float32 table's slope b + 2 c s + 3 d s^2 suffers no cancellation between
    nearly equal neighbouring values.
    """
    p0, p1, m0, m1 = values[:-1], values[1:], slopes[:-1], slopes[1:]
    c = 3 * (p1 - p0) - 2 * m0 - m1
    d = 2 * (p0 - p1) + m0 + m1
    coefficients = torch.cat([p0, m0, c, d], dim=1)  # [n, 4 D]
    return torch.cat([coefficients, torch.zeros_like(coefficients[:1])])  # zero beyond the range


def _value_and_slope(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """f(x) [n, D] and df/dx [n, D] by forward-mode AD (row i depends on x[i] only)."""
    with torch.no_grad():
        value, slope = torch.func.jvp(fn, (x,), (torch.ones_like(x),))
    return value, slope
