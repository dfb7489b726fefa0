import importlib.util

import pytest
import torch

from physnet.nn import scatter


def test_scatter_sum_matches_dense_loop() -> None:
    g = torch.Generator().manual_seed(0)
    src = torch.randn(50, 4, generator=g, dtype=torch.float64)
    index = torch.randint(0, 7, (50,), generator=g)
    out = scatter.scatter_sum(src, index, 9)
    expected = torch.stack([src[index == k].sum(0) for k in range(9)])
    assert out.shape == (9, 4)
    torch.testing.assert_close(out, expected)
    assert torch.all(out[7:] == 0)  # empty bins


def test_scatter_sum_gradient_and_double_backward() -> None:
    src = torch.randn(10, 3, dtype=torch.float64, requires_grad=True)
    index = torch.tensor([0, 1, 1, 2, 0, 2, 2, 1, 0, 0])
    assert torch.autograd.gradcheck(lambda s: scatter.scatter_sum(s, index, 3), (src,))
    assert torch.autograd.gradgradcheck(lambda s: scatter.scatter_sum(s, index, 3) ** 2, (src,))


@pytest.mark.skipif(
    importlib.util.find_spec("torch_scatter") is None,
    reason="torch_scatter is not installed (optional extra physnet[scatter]); nothing to compare against",
)
def test_torch_scatter_and_index_add_agree() -> None:
    import torch_scatter

    src = torch.randn(1000, 16, dtype=torch.float64)
    index = torch.randint(0, 100, (1000,))
    torch.testing.assert_close(
        scatter.scatter_sum_torch(src, index, 100), torch_scatter.scatter_sum(src, index, dim=0, dim_size=100)
    )


def test_backend_choice_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHYSNET_SCATTER", "cuda-magic")
    with pytest.raises(ValueError, match="PHYSNET_SCATTER"):
        scatter._choose_backend()
    monkeypatch.setenv("PHYSNET_SCATTER", "torch")
    assert scatter._choose_backend() == "torch"


def test_scatter_max_and_segment_softmax_match_dense_reference() -> None:
    from physnet.nn.scatter import scatter_max, segment_softmax

    g = torch.Generator().manual_seed(0)
    index = torch.tensor([0, 2, 2, 0, 2, 3])
    logits = 30.0 * torch.randn(6, 4, generator=g, dtype=torch.float64)  # large: needs the max shift
    weight = torch.rand(6, generator=g, dtype=torch.float64)
    weight[5] = 0.0  # bin 3: all weights zero
    assert torch.equal(scatter_max(logits, index, 4)[1], torch.full((4,), float("-inf"), dtype=torch.float64))
    alpha = segment_softmax(logits, index, 4, weight)
    for b in (0, 2):
        rows = index == b
        e = weight[rows, None] * torch.exp(logits[rows] - logits[rows].max(0).values)
        assert torch.allclose(alpha[rows], e / e.sum(0), atol=1e-14)
        assert torch.allclose(alpha[rows].sum(0), torch.ones(4, dtype=torch.float64))
    assert torch.equal(alpha[5], torch.zeros(4, dtype=torch.float64))  # no NaN for an all-zero bin
    plain = segment_softmax(logits[:, 0], index, 4)
    assert torch.allclose(plain[index == 2], torch.softmax(logits[index == 2, 0], 0))
    # gradients exact despite the detached shift
    x = logits[:, 0].clone().requires_grad_()
    (segment_softmax(x, index, 4)[index == 2] * torch.arange(3.0, dtype=torch.float64)).sum().backward()
    y = logits[index == 2, 0].clone().requires_grad_()
    (torch.softmax(y, 0) * torch.arange(3.0, dtype=torch.float64)).sum().backward()
    assert torch.allclose(x.grad[index == 2], y.grad, atol=1e-14)
