import math

import pytest
import torch

from physnet.nn.radial import GaussianRBF, floor_exponent, truncated_exp


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_truncated_exp_is_close_continuous_and_never_subnormal(dtype: torch.dtype) -> None:
    t = floor_exponent(dtype)
    a = torch.linspace(-3 * t, 0.0, 100001, dtype=dtype)
    y = truncated_exp(a)
    tiny = torch.finfo(dtype).tiny  # smallest normal number
    assert not bool(((y != 0) & (y.abs() < tiny)).any())  # no subnormals
    exact = torch.exp(a)
    eps = torch.finfo(dtype).eps
    assert bool(((y - exact).abs() <= math.exp(-t) * (1 + 1e-6) + eps * exact).all())
    assert bool((y[a < -t] == 0).all())
    # continuous at the floor: the value there is exp(-T) - exp(-T) = 0
    assert float(truncated_exp(torch.tensor(-t, dtype=dtype))) == 0.0


def test_gaussian_rbf_tails_are_zero_not_subnormal() -> None:
    rbf = GaussianRBF(20, 5.0)  # default gamma = 1 / (2 spacing^2) = 7.2 / Å^2
    r = torch.linspace(0.0, 5.0, 1001)
    e = rbf(r)
    exact = torch.exp(-rbf.gamma * (r.unsqueeze(-1) - rbf.centres) ** 2)
    assert bool(((e - exact).abs() <= 1e-13 + 1e-5 * exact).all())  # float32 rounding of the argument
    assert not bool(((e != 0) & (e < torch.finfo(torch.float32).tiny)).any())
    assert (
        float((exact[(exact != 0) & (exact < torch.finfo(torch.float32).tiny)]).numel()) > 0
    )  # plain exp has them
