import math

import pytest
import torch

from physnet.nn.tabulate import HermiteTable


def smooth(x: torch.Tensor) -> torch.Tensor:
    """[n] -> [n, 3]: smooth functions with a cosine cutoff at 4."""
    cut = 0.5 * (torch.cos(x * math.pi / 4.0) + 1.0)
    return torch.stack([torch.exp(-2.0 * (x - 1.0) ** 2), torch.sin(3.0 * x), x * x], -1) * cut.unsqueeze(-1)


def test_values_and_slopes_match_the_function_in_float64():
    table = HermiteTable(smooth, 4.0, dtype=torch.float64, tol=1e-9)
    assert table.error["value"] <= 1e-9 and table.error["slope"] <= 1e-9
    x = (torch.rand(1000, dtype=torch.float64) * 4.0).requires_grad_(True)
    y = table(x)
    exact = smooth(x.detach())
    assert torch.allclose(y, exact, atol=1e-9 * float(exact.abs().max()))
    (slope,) = torch.autograd.grad(y[:, 1].sum(), x)
    exact_slope = 3.0 * torch.cos(3.0 * x.detach()) * 0.5 * (
        torch.cos(x.detach() * math.pi / 4) + 1
    ) - torch.sin(3.0 * x.detach()) * 0.5 * math.pi / 4 * torch.sin(x.detach() * math.pi / 4)
    assert torch.allclose(slope, exact_slope, atol=1e-8)


def test_float32_table_is_within_float32_round_off():
    table = HermiteTable(smooth, 4.0, dtype=torch.float32)
    x = torch.rand(1000, dtype=torch.float64) * 4.0
    assert table(x).dtype == torch.float32
    err = (table(x).double() - smooth(x)).abs().max()
    assert err < 1e-6


def test_zero_beyond_the_range_and_refinement_recorded():
    table = HermiteTable(smooth, 4.0, dtype=torch.float64, spacing=0.5, tol=1e-8)
    assert table.n_rows > 8  # refined from 8 intervals
    out = table(torch.tensor([4.0, 4.5, 10.0], dtype=torch.float64))
    assert torch.equal(out, torch.zeros(3, 3, dtype=torch.float64))


def test_second_derivatives_are_refused():
    table = HermiteTable(smooth, 4.0, dtype=torch.float64, tol=1e-8)
    x = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    with pytest.raises(RuntimeError, match="differentiable once only"):
        torch.autograd.grad(table(x).sum(), x, create_graph=True)


def test_a_kink_cannot_be_tabulated():
    with pytest.raises(ValueError, match="not smooth enough"):
        HermiteTable(lambda x: (x - 1.234567).abs().unsqueeze(-1), 2.0, dtype=torch.float64, max_rows=512)
