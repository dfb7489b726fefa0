"""GNS learned simulator: shapes, symmetries (shared kit), noise maths, buffers, rollout."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import physnet
from physnet.data import keys as K
from physnet.models.gns import (
    GNS,
    constant_velocity_rollout,
    euler_step,
    noisy_target_acceleration,
    random_walk_noise,
    rollout,
)
from physnet.testing import TOLERANCES, check_particle_symmetries

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "data" / "mpm_water" / "water_fixture.npz"
BOUNDS = [[0.0, 1.0], [0.0, 1.0]]
# the config's body acceleration is gravity for 4 ms frames; the fixture's frames are 2 ms apart
FIXTURE_GRAVITY = "model.body_acceleration=[0.0, -3.92e-5]"


def small_gns(dtype: torch.dtype = torch.float64, **kw) -> GNS:
    torch.manual_seed(0)
    args = dict(
        dim=2,
        bounds=BOUNDS,
        radius=0.15,
        latent_size=16,
        hidden_size=16,
        n_message_passing=3,
        n_particle_types=2,
    )
    args.update(kw)
    model = physnet.models.build_simulator("gns", **args).to(dtype).eval()
    # non-trivial statistics so that the buffers take part in every check
    model.vel_mean.fill_(1e-3)
    model.vel_std.fill_(0.01)
    model.acc_mean.fill_(-2e-4)
    model.acc_std.fill_(1e-3)
    return model


def random_window(n: int = 40, dim: int = 2, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    """[n, 6, dim] smooth random trajectories inside the unit box, pairs not at the cutoff."""
    g = torch.Generator().manual_seed(seed)
    start = 0.2 + 0.6 * torch.rand(n, dim, generator=g, dtype=dtype)
    vel = 0.01 * torch.randn(n, dim, generator=g, dtype=dtype)
    acc = 1e-3 * torch.randn(n, dim, generator=g, dtype=dtype)
    t = torch.arange(6, dtype=dtype).view(1, 6, 1)
    return start.unsqueeze(1) + vel.unsqueeze(1) * t + 0.5 * acc.unsqueeze(1) * t**2


def graph(window: torch.Tensor, ptype: torch.Tensor | None = None, batch: torch.Tensor | None = None) -> dict:
    out = {
        K.POS_HISTORY: window,
        K.Z: torch.zeros(window.shape[0], dtype=torch.long) if ptype is None else ptype,
    }
    if batch is not None:
        out[K.BATCH] = batch
    return out


def test_registered_as_simulator_not_energy_model() -> None:
    assert "gns" in physnet.models.available_simulators()
    assert "gns" not in physnet.models.available()
    with pytest.raises(TypeError, match="unknown argument"):
        physnet.models.build_simulator("gns", species=["H"])


def test_shapes_and_edges() -> None:
    model = small_gns()
    window = random_window(30)
    acc = model(graph(window))
    assert acc.shape == (30, 2) and acc.dtype == torch.float64 and torch.isfinite(acc).all()
    edges = model.build_edges(window[:, -1])
    dist = (window[edges[1], -1] - window[edges[0], -1]).norm(dim=-1)
    assert edges.shape[1] > 0 and bool((dist < model.radius).all())
    assert not bool((edges[0] == edges[1]).any())
    nxt = model.step(graph(window))
    assert torch.allclose(nxt, 2 * window[:, -1] - window[:, -2] + acc)
    with pytest.raises(ValueError, match="pos_history"):
        model(graph(window[:, :5]))
    # a 3D model works the same way
    model3 = small_gns(dim=3, bounds=[[0.0, 1.0]] * 3)
    assert model3(graph(random_window(20, dim=3))).shape == (20, 3)


def _as_3d(model: GNS):
    """The 2D model seen from the kit's 3D world: z of the inputs is ignored, z of the output is 0."""

    @torch.no_grad()
    def fn(window: torch.Tensor, ptype: torch.Tensor) -> torch.Tensor:
        acc = model(graph(window[..., :2].contiguous(), ptype))
        return torch.cat([acc, torch.zeros_like(acc[:, :1])], dim=-1)

    return fn


def _inputs(n: int = 40):
    window2 = random_window(n)
    window3 = torch.cat([window2, torch.zeros_like(window2[..., :1])], dim=-1)  # [n, 6, 3] with z = 0
    ptype = torch.randint(0, 2, (n,), generator=torch.Generator().manual_seed(1))
    return {"window": window3, "ptype": ptype}, {"window": "position", "ptype": "invariant"}


def test_translation_invariance_and_permutation_equivariance_without_walls() -> None:
    model = small_gns(wall_features=False)
    inputs, kinds = _inputs()
    fn = _as_3d(model)
    scale = float(fn(**inputs).abs().max())
    report = check_particle_symmetries(
        fn, inputs, kinds, "vector", ("translation", "permutation"), group_key=None
    )
    # absolute errors on accelerations of size ~1e-3; the kit's float64 threshold is relative
    tol = TOLERANCES[torch.float64]["symmetry"]
    assert report["translation"] <= tol * scale and report["translation"] <= 1e-10, report
    assert report["permutation"] <= tol * scale, report
    # the same holds for a genuinely 3D model
    model3 = small_gns(dim=3, bounds=[[0.0, 1.0]] * 3, wall_features=False)
    w3 = random_window(40, dim=3)
    fn3 = torch.no_grad()(lambda window, ptype: model3(graph(window, ptype)))
    rep3 = check_particle_symmetries(
        fn3,
        {"window": w3, "ptype": inputs["ptype"]},
        kinds,
        "vector",
        ("translation", "permutation"),
        group_key=None,
    )
    assert max(rep3.values()) <= 1e-10, rep3


def test_permutation_within_systems_of_a_batch() -> None:
    model = small_gns()
    w = torch.cat([random_window(20, seed=1), random_window(25, seed=2)])
    batch = torch.cat([torch.zeros(20, dtype=torch.long), torch.ones(25, dtype=torch.long)])
    ptype = torch.zeros(45, dtype=torch.long)
    fn = torch.no_grad()(lambda window, ptype, batch: model(graph(window, ptype, batch)))
    inputs = {"window": w, "ptype": ptype, "batch": batch}
    kinds = {"window": "vector", "ptype": "invariant", "batch": "invariant"}  # only permutation is checked
    report = check_particle_symmetries(fn, inputs, kinds, "vector", ("permutation",), group_key="batch")
    assert report["permutation"] <= 1e-12, report
    # systems of a batch do not see each other: batched == one at a time
    both = model(graph(w, ptype, batch))
    torch.testing.assert_close(both[:20], model(graph(w[:20])), rtol=0, atol=1e-14)
    torch.testing.assert_close(both[20:], model(graph(w[20:])), rtol=0, atol=1e-14)


@pytest.mark.parametrize(
    "walls",
    [
        {},
        {"wall_edges": True},
        {"wall_edges": True, "pairwise_decoder": True, "body_acceleration": [0, -1e-3]},
        {"wall_edges": True, "signed_wall_distance": True, "wall_damping": "step"},
        {"wall_edges": True, "signed_wall_distance": True, "wall_damping": "step", "wall_damping_range": 0.1},
    ],
    ids=["features", "wall_nodes", "wall_nodes_pairwise", "wall_damping", "wall_damping_range"],
)
def test_walls_break_translation_invariance(walls: dict) -> None:
    """With wall features on, the distance to the walls is an input: a translation moves the
    particles relative to the fixed walls and changes the accelerations. Translation is then
    not a symmetry of the model, by design (the walls are not translated with the fluid).
    Wall nodes keep permutation equivariance (through the kit)."""
    model = small_gns(wall_features=True, **walls)
    inputs, kinds = _inputs()
    fn = _as_3d(model)
    scale = float(fn(**inputs).abs().max())
    report = check_particle_symmetries(
        fn, inputs, kinds, "vector", ("translation", "permutation"), group_key=None
    )
    assert report["translation"] > 1e-3 * scale, report
    assert report["permutation"] <= 1e-12, report  # permutation stays a symmetry
    # a shift that keeps every particle more than R from every wall leaves the (clipped) wall
    # features, hence the output, unchanged: the walls matter only within R
    window = 0.25 + (random_window(30) - 0.2) * (0.4 / 0.6)  # inside [0.24, 0.66]^2
    moved = window + torch.tensor([0.05, 0.08], dtype=window.dtype)
    for w in (window, moved):
        assert float(w.min()) > model.radius and float(w.max()) < 1 - model.radius
    torch.testing.assert_close(model(graph(moved)), model(graph(window)), rtol=0, atol=1e-12)


def test_random_walk_noise_statistics() -> None:
    g = torch.Generator().manual_seed(0)
    window = torch.zeros(20000, 6, 2, dtype=torch.float64)
    noise = random_walk_noise(window, 6.7e-4, g)
    assert noise.shape == window.shape
    assert bool((noise[:, 0] == 0).all())  # the oldest position is not perturbed
    std = noise.std(dim=(0, 2))  # [6]: grows like sqrt(k / 5) * 6.7e-4
    expected = 6.7e-4 * torch.sqrt(torch.arange(6, dtype=torch.float64) / 5)
    torch.testing.assert_close(std, expected, rtol=0.03, atol=0)
    vel_noise = noise[:, 1:] - noise[:, :-1]
    torch.testing.assert_close(
        vel_noise.std(), torch.tensor(6.7e-4 / 5**0.5, dtype=torch.float64), rtol=0.02, atol=0
    )


def test_noisy_target_gives_the_true_next_velocity() -> None:
    window = random_window(50)
    next_pos = 2 * window[:, -1] - window[:, -2] + 1e-3 * torch.randn(50, 2, dtype=torch.float64)
    noise = random_walk_noise(window, 1e-2, torch.Generator().manual_seed(3))
    target = noisy_target_acceleration(window, next_pos, noise)
    clean_acc = next_pos - 2 * window[:, -1] + window[:, -2]
    # a_target = a - (n_t - n_{t-1})
    torch.testing.assert_close(target, clean_acc - (noise[:, -1] - noise[:, -2]), rtol=0, atol=1e-15)
    # Euler from the noisy window with the target: the true next velocity, position noise kept
    noisy = window + noise
    stepped = euler_step(noisy, target)
    torch.testing.assert_close(stepped - noisy[:, -1], next_pos - window[:, -1], rtol=0, atol=1e-15)
    torch.testing.assert_close(stepped, next_pos + noise[:, -1], rtol=0, atol=1e-15)
    # zero noise: the plain finite-difference acceleration
    torch.testing.assert_close(
        noisy_target_acceleration(window, next_pos, torch.zeros_like(noise)), clean_acc
    )


def test_statistics_are_buffers_in_the_state_dict(tmp_path: Path) -> None:
    from physnet.train.gns import load_trajectories

    data = load_trajectories(FIXTURE, torch.float64)
    model = physnet.models.build_simulator(
        "gns", bounds=data.bounds.tolist(), latent_size=8, hidden_size=8, n_message_passing=1
    )
    model.fit_statistics(data.positions)
    vel = torch.cat([(p[1:] - p[:-1]).reshape(-1, 2) for p in data.positions])
    torch.testing.assert_close(model.vel_mean, vel.mean(0).float())
    torch.testing.assert_close(model.vel_std, (vel.var(0) + 6.7e-4**2).sqrt().float())
    state = model.state_dict()
    for name in ("vel_mean", "vel_std", "acc_mean", "acc_std", "bounds"):
        assert name in state
    assert float(model.acc_std.min()) > 6.7e-4  # widened by the noise
    model.save(tmp_path / "gns.pt")
    loaded = physnet.models.load_simulator(tmp_path / "gns.pt")
    for name in ("vel_mean", "vel_std", "acc_mean", "acc_std"):
        torch.testing.assert_close(getattr(loaded, name), getattr(model, name), rtol=0, atol=0)
    window = data.positions[0][:6].transpose(0, 1).float()
    g = graph(window)
    torch.testing.assert_close(loaded(g), model.eval()(g), rtol=0, atol=0)


def test_forward_stores_nothing_on_the_module() -> None:
    model = small_gns(dtype=torch.float32)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    attrs = {m: set(vars(mod)) for m, mod in model.named_modules()}
    dicts = {
        m: {k: set(getattr(mod, k)) for k in ("_buffers", "_parameters", "_modules")}
        for m, mod in model.named_modules()
    }
    out = model(graph(random_window(25, dtype=torch.float32)))
    out.sum().backward()
    assert {m: set(vars(mod)) for m, mod in model.named_modules()} == attrs
    assert {
        m: {k: set(getattr(mod, k)) for k in ("_buffers", "_parameters", "_modules")}
        for m, mod in model.named_modules()
    } == dicts
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # LayerNorm has no running stats; nothing changes in forward


def test_rollout_shapes_and_graph_rebuilt_each_step(monkeypatch: pytest.MonkeyPatch) -> None:
    model = small_gns()
    window = random_window(30)
    calls = []
    original = GNS.build_edges

    def counting(self, pos, batch=None):
        calls.append(pos.clone())
        return original(self, pos, batch)

    monkeypatch.setattr(GNS, "build_edges", counting)
    out = rollout(model, window, 7)
    assert out.shape == (7, 30, 2)
    assert len(calls) == 7
    torch.testing.assert_close(calls[1], out[0])  # step 2's graph is built on step 1's prediction
    # the first step equals one explicit Euler step
    torch.testing.assert_close(out[0], model.step(graph(window)), rtol=0, atol=0)
    assert rollout(model, window, 0).shape == (0, 30, 2)
    cv = constant_velocity_rollout(window, 3)
    torch.testing.assert_close(cv[2], window[:, -1] + 3 * (window[:, -1] - window[:, -2]))


def test_huber_loss_is_quadratic_then_linear() -> None:
    """``huber_delta``: the squared error per particle up to delta, 2 delta r - delta^2 beyond
    (continuous value and slope); 0 keeps the squared error; negative is refused."""
    from physnet.train.gns import GNSTask

    model = physnet.models.build_simulator(
        "gns", bounds=[[0.0, 1.0], [0.0, 1.0]], latent_size=8, hidden_size=8
    )
    model.acc_std.fill_(2.0)
    target = torch.zeros(3, 2)
    pred = torch.tensor([[0.6, 0.8], [0.0, 2.0], [6.0, 8.0]])  # normalised error norms r = 0.5, 1, 5
    plain = GNSTask(model, huber_delta=0.0).loss(pred, target)
    assert float(plain) == pytest.approx((0.25 + 1.0 + 25.0) / 3)
    huber = GNSTask(model, huber_delta=1.0)
    assert float(huber.loss(pred, target)) == pytest.approx((0.25 + 1.0 + (2 * 5 - 1)) / 3)
    x = torch.tensor([[2.0, 0.0]], requires_grad=True)  # r = 1 = delta: slope 2 r / std = 1 from both sides
    huber.loss(x, torch.zeros(1, 2)).backward()
    assert float(x.grad[0, 0]) == pytest.approx(1.0)
    big = torch.tensor([[20.0, 0.0]], requires_grad=True)  # r = 10: slope bounded at 2 delta / std = 1
    huber.loss(big, torch.zeros(1, 2)).backward()
    assert float(big.grad[0, 0]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="huber_delta"):
        GNSTask(model, huber_delta=-1.0)


def test_one_training_step_reduces_the_loss_on_a_fixed_batch() -> None:
    """The task's loss, gradients and optimiser are wired: 30 steps on one batch lower the loss by > 25 %."""
    from physnet.train.gns import GNSTask, WindowDataset, collate_windows, load_trajectories

    torch.manual_seed(0)
    data = load_trajectories(FIXTURE)
    model = physnet.models.build_simulator(
        "gns", bounds=data.bounds.tolist(), latent_size=16, hidden_size=16, n_message_passing=2
    )
    model.fit_statistics(data.positions)
    task = GNSTask(model, lr=3e-3, noise_std=0.0)
    batch = collate_windows([WindowDataset(data, 6)[i] for i in (40, 120)])
    target = batch[K.NEXT_POS] - 2 * batch[K.POS_HISTORY][:, -1] + batch[K.POS_HISTORY][:, -2]
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = float(task.loss(model(batch), target).detach())
    for _ in range(30):
        loss = task.loss(model(batch), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(task.loss(model(batch), target).detach()) < 0.75 * first
    assert task.lr_at(0) == pytest.approx(3e-3)
    assert task.lr_at(int(task.lr_decay_steps)) == pytest.approx(1e-6 + (3e-3 - 1e-6) * 0.1)


def test_body_acceleration_is_the_offset_of_the_decoder() -> None:
    """With a known body acceleration, fit_statistics keeps it as the offset: a zero decoder
    predicts free fall exactly; without, the offset is the data's mean acceleration."""
    from physnet.train.gns import free_fall_response

    g = [0.0, -1.5e-4]
    t = torch.arange(12, dtype=torch.float64)[:, None, None]
    grid = torch.stack(torch.meshgrid(torch.arange(3.0), torch.arange(3.0), indexing="ij"), -1).reshape(-1, 2)
    pos = 0.5 + 0.0075 * grid.double() + 0.5 * torch.tensor(g, dtype=torch.float64) * t * (t + 1)
    rest = pos[:1].expand(12, -1, -1)  # a second trajectory at rest: the data's mean acceleration is g / 2
    kwargs = {"bounds": [[0.0, 1.0], [0.0, 1.0]], "latent_size": 8, "hidden_size": 8, "n_message_passing": 1}
    for body, offset in ((g, g), (None, [0.0, -0.75e-4])):
        model = physnet.models.build_simulator("gns", body_acceleration=body, **kwargs).double()
        model.fit_statistics([pos, rest])
        torch.testing.assert_close(model.acc_mean, torch.tensor(offset, dtype=torch.float64))
        torch.nn.init.zeros_(model.decoder[-1].weight)
        torch.nn.init.zeros_(model.decoder[-1].bias)
        ratio = free_fall_response(model, pos, torch.zeros(9, dtype=torch.long))["free_fall_ratio"]
        assert ratio == pytest.approx(1.0 if body else 0.5)
    assert (
        physnet.models.build_simulator("gns", body_acceleration=g, **kwargs).hparams["body_acceleration"] == g
    )
    with pytest.raises(ValueError, match="body_acceleration"):
        physnet.models.build_simulator("gns", body_acceleration=[0.0, -1.0, 0.0], **kwargs)


def test_free_fall_response_measures_the_learnt_body_force() -> None:
    """A block in free fall (all particles share g dt^2) is scored against g; frames with a
    contact (one particle accelerated differently) are left out."""
    from physnet.train.gns import free_fall_response

    torch.manual_seed(0)
    model = physnet.models.build_simulator(
        "gns", bounds=[[0.0, 1.0], [0.0, 1.0]], latent_size=8, hidden_size=8, n_message_passing=1
    ).double()
    g = torch.tensor([0.0, -1.5e-4], dtype=torch.float64)
    t = torch.arange(20, dtype=torch.float64)[:, None, None]
    grid = torch.stack(torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij"), -1).reshape(-1, 2)
    pos = 0.4 + 0.0075 * grid.double() + 2e-3 * t + 0.5 * g * t * (t + 1)  # [20, 16, 2], acc = g
    pos[15:, 0] += 1e-3 * (t[15:, 0] - 14) ** 2  # particle 0 hit something: frames 14.. are not free fall
    ptype = torch.zeros(16, dtype=torch.long)
    torch.nn.init.zeros_(model.decoder[-1].weight)
    torch.nn.init.zeros_(model.decoder[-1].bias)
    model.acc_mean.copy_(g)  # the model predicts exactly g everywhere
    out = free_fall_response(model, pos, ptype)
    assert out["free_fall_frames"] == 14 - 5  # windows ending at frames 5..13 (frame t needs t + 1)
    assert out["free_fall_ratio"] == pytest.approx(1.0) and out["free_fall_rms"] == pytest.approx(
        0.0, abs=1e-12
    )
    model.acc_mean.zero_()  # ignores gravity
    out = free_fall_response(model, pos, ptype)
    assert out["free_fall_ratio"] == pytest.approx(0.0, abs=1e-12) and out["free_fall_rms"] == pytest.approx(
        1.0
    )
    still = pos[:1].expand(20, -1, -1)  # at rest: no acceleration, no free-fall frame
    assert math.isnan(free_fall_response(model, still, ptype)["free_fall_ratio"])


def test_excursion_and_escaped_particles() -> None:
    from physnet.train.gns import escaped_particles, excursion

    bounds = torch.tensor([[0.0, 1.0], [0.0, 2.0]])
    pos = torch.full((3, 4, 2), 0.5)  # [T, n, dim], all inside
    assert excursion(pos, bounds) == 0.0 and escaped_particles(pos, bounds) == 0
    pos[1, 0, 0] = -0.25  # particle 0 leaves through x_lo in frame 1 only
    pos[2, 2, 1] = 2.5  # particle 2 through y_hi
    pos[0, 2, 0] = 1.125  # and through x_hi earlier
    assert excursion(pos, bounds) == pytest.approx(0.5)
    assert escaped_particles(pos, bounds) == 2
    pos[:, 3] = bounds[:, 1]  # exactly on the wall counts as inside
    assert escaped_particles(pos, bounds) == 2
    # with a tolerance: particle 0 reaches 0.25 beyond x_lo, particle 2 0.5 beyond y_hi
    assert escaped_particles(pos, bounds, tolerance=0.2) == 2
    assert escaped_particles(pos, bounds, tolerance=0.3) == 1
    assert escaped_particles(pos, bounds, tolerance=0.5) == 0


def test_evaluate_and_animation(tmp_path: Path) -> None:
    from PIL import Image

    from physnet.train.gns import animate, evaluate, load_trajectories

    data = load_trajectories(FIXTURE)
    data.positions = [p[:20] for p in data.positions[:1]]
    data.particle_type = data.particle_type[:1]
    model = physnet.models.build_simulator(
        "gns", bounds=data.bounds.tolist(), latent_size=8, hidden_size=8, n_message_passing=1
    )
    model.fit_statistics(data.positions)
    summary = evaluate(copy.deepcopy(model), data, verbose=False)
    for key in ("mean_one_step_mse", "mean_cv_one_step_mse", "mean_rollout_mse", "mean_cv_rollout_mse"):
        assert np.isfinite(summary[key]) and summary[key] >= 0
    assert summary["mean_max_excursion"] >= 0
    assert summary["mean_escaped_particles"] == sum(summary["escaped_particles"])
    assert summary["escape_tolerance"] == pytest.approx(0.1 * model.radius)
    assert summary["mean_free_fall_frames"] == sum(summary["free_fall_frames"])
    assert all(
        b <= a for a, b in zip(summary["escaped_particles"], summary["escaped_beyond_tolerance"], strict=True)
    )
    truth = data.positions[0].numpy()
    gif = animate(truth + 0.01, truth, data.bounds, tmp_path / "a.gif", every=5)
    with Image.open(gif) as im:
        assert im.n_frames == 4
    with pytest.raises(ValueError):
        animate(truth[:3], truth, data.bounds, tmp_path / "b.gif")


@pytest.mark.slow
def test_cli_train_and_rollout_on_the_fixture(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """``physnet gns-train`` (3 steps of a tiny model) then ``physnet gns-rollout`` with a GIF (~25 s)."""
    from physnet.cli import main

    run = tmp_path / "run"
    fixture = str(FIXTURE)
    overrides = [
        f"run_dir={run}",
        f"data.train={fixture}",
        FIXTURE_GRAVITY,
        f"data.valid={fixture}",
        f"data.test={fixture}",
        "data.eval_trajectories=1",
        "data.val_stride=50",
        "model.latent_size=8",
        "model.hidden_size=8",
        "model.n_message_passing=1",
        "trainer.max_steps=3",
        "task.val_every_n_steps=3",
    ]
    assert main(["gns-train", str(ROOT / "examples" / "configs" / "gns_water.yaml"), *overrides]) == 0
    metrics = json.loads((run / "test_metrics.json").read_text())
    assert metrics["optimizer_steps"] == 3 and metrics["test"]["trajectories"] == [0]
    gif = tmp_path / "roll.gif"
    out = tmp_path / "roll.json"
    args = [
        "gns-rollout",
        str(run / "gns.pt"),
        fixture,
        "--trajectories",
        "1",
        "--gif",
        str(gif),
        "--every",
        "20",
    ]
    assert main([*args, "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "rollout MSE" in printed and "constant velocity" in printed and "max excursion" in printed
    assert gif.stat().st_size > 0 and json.loads(out.read_text())["trajectories"] == [1]
    assert main(["gns-rollout", str(run / "gns.pt"), fixture, "--trajectories", "7"]) == 2  # out of range


def test_wall_cutoff_sets_how_far_walls_are_seen() -> None:
    """Wall distances are divided by ``wall_cutoff`` (default ``radius``) and clipped to [-1, 1]."""
    near = small_gns()  # radius 0.15
    far = small_gns(wall_cutoff=0.3)
    assert near.wall_cutoff == near.radius == 0.15
    window = random_window(4)
    window[:, :, :] = torch.tensor([0.2, 0.5], dtype=window.dtype)  # 0.2 from the left wall, at rest
    edges = near.build_edges(window[:, -1])
    f_near, _ = near.features(window, torch.zeros(4, dtype=torch.long), edges)
    f_far, _ = far.features(window, torch.zeros(4, dtype=torch.long), edges)
    walls_near, walls_far = f_near[0, -4:], f_far[0, -4:]  # lower x, lower y, upper x, upper y
    torch.testing.assert_close(walls_near, torch.ones(4, dtype=window.dtype))  # all beyond R: clipped
    torch.testing.assert_close(walls_far, torch.tensor([0.2 / 0.3, 1, 1, 1], dtype=window.dtype))
    with pytest.raises(ValueError, match="wall_cutoff"):
        small_gns(wall_cutoff=0.0)


@pytest.mark.parametrize("ema_decay", [0.0, 0.5])
def test_validation_rollouts_select_the_saved_model(
    tmp_path: Path, ema_decay: float, capsys: pytest.CaptureFixture[str]
) -> None:
    """With ``data.val_rollouts`` the saved ``gns.pt`` is the validated model (EMA weights if on)
    with the lowest validation rollout MSE: rolling it out again reproduces the logged best.
    Every validation prints its figures (progress of a long run)."""
    import csv

    from physnet.models.simulator import load_simulator
    from physnet.train.gns import load_gns_config, load_trajectories, train_gns

    fixture = str(FIXTURE)
    cfg = load_gns_config(
        ROOT / "examples" / "configs" / "gns_water.yaml",
        [
            f"run_dir={tmp_path / 'run'}",
            f"data.train={fixture}",
            FIXTURE_GRAVITY,
            f"data.valid={fixture}",
            "data.test=",
            "data.val_stride=50",
            "data.val_rollouts=1",
            "data.acceleration_sampling=2",  # the weighted sampler path
            "model.latent_size=8",
            "model.hidden_size=8",
            "model.n_message_passing=1",
            "trainer.max_steps=6",
            "task.val_every_n_steps=2",
            "task.lr=0.01",
            f"task.ema_decay={ema_decay}",
            "trainer.dtype=float64",
        ],
    )
    run = train_gns(cfg)
    with open(run / "logs" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("val/rollout_mse")]
    logged = [float(r["val/rollout_mse"]) for r in rows]
    assert len(logged) == 3 and len(set(logged)) == 3  # three validations, three different models
    assert [float(r["val/diverged"]) for r in rows] == [0.0] * 3  # none clumped
    progress = [line for line in capsys.readouterr().out.splitlines() if line.startswith("step ")]
    assert len(progress) == 3 and all("rollout MSE" in line for line in progress)
    assert f"rollout MSE {logged[0]:.3e}" in progress[0]
    selected = json.loads((run / "test_metrics.json").read_text())["selected"]
    assert selected["val_rollout_mse"] == pytest.approx(min(logged), rel=1e-12)
    assert selected["val_selection_score"] == pytest.approx(min(logged) / (1 + min(logged)), rel=1e-6)
    assert selected["val_diverged_rollouts"] == 0
    assert all(float(r["val/compression"]) > 0.5 for r in rows)  # peak neighbours over the truth's
    assert all(
        math.isfinite(float(r["val/free_fall_ratio"])) for r in rows
    )  # the fixture has free-fall frames
    assert all("free fall" in line for line in progress)
    assert selected["step"] == 2 * (1 + logged.index(min(logged)))
    model = load_simulator(run / "gns.pt")
    assert next(model.parameters()).dtype == torch.float64  # trained in float64, loaded as such
    pos = load_trajectories(fixture, torch.float64).positions[0]
    pred = rollout(model, pos[:6].transpose(0, 1), pos.shape[0] - 6)
    assert float((pred - pos[6:]).pow(2).mean()) == pytest.approx(min(logged), rel=1e-9)


def test_validation_rollouts_need_validation_data(tmp_path: Path) -> None:
    from physnet.train.gns import load_gns_config, train_gns

    cfg = load_gns_config(
        None, [f"run_dir={tmp_path}", f"data.train={FIXTURE}", "data.val_rollouts=2", "trainer.max_steps=1"]
    )
    with pytest.raises(ValueError, match="data.valid"):
        train_gns(cfg)


def test_factorised_edge_layer_equals_the_concatenation() -> None:
    """The interaction block's first edge layer, evaluated on projected nodes, is the MLP on
    ``[e_ij, v_i, v_j]`` (Battaglia et al. 2018, Alg. 1) to round-off."""
    from physnet.models.gns import InteractionNetwork
    from physnet.nn.scatter import scatter_sum

    torch.manual_seed(0)
    block = InteractionNetwork(latent=12, hidden=10, n_hidden=2).double()
    node, edge = torch.randn(7, 12, dtype=torch.float64), torch.randn(20, 12, dtype=torch.float64)
    edge_index = torch.randint(0, 7, (2, 20))
    new_node, new_edge = block(node, edge, edge_index)
    i, j = edge_index
    ref_edge = block.edge_mlp(torch.cat([edge, node[i], node[j]], dim=-1))
    ref_node = block.node_mlp(torch.cat([node, scatter_sum(ref_edge, i, 7)], dim=-1))
    torch.testing.assert_close(new_edge, edge + ref_edge, rtol=0, atol=1e-12)
    torch.testing.assert_close(new_node, node + ref_node, rtol=0, atol=1e-12)


def test_rollout_clamp_to_bounds_imposes_the_walls() -> None:
    """A model that accelerates everything downwards takes particles through the floor; with
    ``clamp_to_bounds`` they stop on it, and far from the walls nothing changes."""
    from physnet.train.gns import escaped_particles

    model = small_gns()
    model.acc_mean.copy_(torch.tensor([0.0, -0.01]))  # strong downward drift
    model.acc_std.fill_(1e-12)  # network output negligible: the rollout is a pure fall
    window = random_window(30)
    free = rollout(model, window, 20)
    walled = rollout(model, window, 20, clamp_to_bounds=True)
    bounds = model.bounds
    assert escaped_particles(free, bounds) > 0 and escaped_particles(walled, bounds) == 0
    assert bool((walled[-1, :, 1] == bounds[1, 0]).any())  # some rest on the floor
    inside = (free >= bounds[:, 0]).all(-1).all(0) & (free <= bounds[:, 1]).all(-1).all(0)  # [n]
    torch.testing.assert_close(walled[:, inside], free[:, inside], rtol=0, atol=0)


def test_acceleration_weights_favour_the_violent_window() -> None:
    """``WindowDataset.acceleration_weights``: uniform at strength 0; the window whose target
    step holds the only kick gets the largest weight, ``1 + s * e / mean(e)``."""
    from physnet.train.gns import Trajectories, WindowDataset

    n_frames, n, kick = 20, 3, 12  # the velocity changes between frames 11 -> 12 and 12 -> 13
    x = torch.zeros(n_frames, n, 2, dtype=torch.float64)
    x[:, :, 0] = torch.arange(n_frames, dtype=torch.float64).view(-1, 1) * 1e-3  # constant velocity
    x[kick + 1 :, :, 1] = 1e-3 * torch.arange(1, n_frames - kick, dtype=torch.float64).view(-1, 1)
    data = Trajectories([x], [torch.zeros(n, dtype=torch.long)], np.array(BOUNDS), 1.0)
    ds = WindowDataset(data, window=6)
    zero, one = torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64)
    torch.testing.assert_close(
        ds.acceleration_weights(zero, one, 0.0), torch.ones(len(ds), dtype=torch.float64)
    )
    w = ds.acceleration_weights(zero, one, 3.0)
    # the target of window t is x[t + 6] - 2 x[t + 5] + x[t + 4]: nonzero only for t + 5 == kick
    k, t = ds.index[int(w.argmax())]
    assert (k, t) == (0, kick - 5)
    assert float(w.max()) == pytest.approx(1 + 3 * len(ds))  # all of e in one window
    assert float(w.min()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match=">= 0"):
        ds.acceleration_weights(zero, one, -1.0)


def collapsing(model: GNS, centre: float = 0.5) -> GNS:
    """``model`` with its network replaced by an acceleration that stops every particle and
    pulls it halfway to ``centre``: the predicted particles pile up within a few frames."""

    def forward(g: dict[str, torch.Tensor]) -> torch.Tensor:
        last, prev = g[K.POS_HISTORY][:, -1], g[K.POS_HISTORY][:, -2]
        return -(last - prev) - 0.5 * (last - centre)

    model.forward = forward  # type: ignore[method-assign]
    return model


def test_rollout_stops_when_the_particles_clump() -> None:
    """A rollout whose particles pile up raises ``RolloutDiverged`` once a step's graph has more
    neighbours per particle than ``max_mean_neighbours``, carrying the frames predicted before it;
    without a limit the same rollout runs on and its graph ends up all-pairs."""
    from physnet.models.gns import RolloutDiverged

    model = collapsing(small_gns())
    window = random_window(40)
    n = window.shape[0]
    free = rollout(model, window, 12)  # no limit: all 12 frames
    neighbours = [model.build_edges(x).shape[1] / n for x in (window[:, -1], *free)]
    assert neighbours[0] < 10 and neighbours[-1] == n - 1  # everybody within R of everybody
    with pytest.raises(RolloutDiverged, match="neighbours per particle") as stop:
        rollout(model, window, 12, max_mean_neighbours=10.0)
    k = stop.value.step
    first_over = next(t for t, m in enumerate(neighbours) if m > 10.0)
    assert k == first_over and 0 < k < 12  # the graph of frame k - 1's prediction was too dense
    assert stop.value.mean_neighbours == pytest.approx(neighbours[k])
    torch.testing.assert_close(stop.value.positions, free[:k], rtol=0, atol=0)
    torch.testing.assert_close(rollout(model, window, 12, max_mean_neighbours=n), free, rtol=0, atol=0)


def test_rollout_stops_when_a_particle_runs_away() -> None:
    """A model that pushes particles out of the box, faster the further out they are, stops with
    ``RolloutDiverged`` once one is more than ``max_excursion`` outside (and at once on a
    non-finite position), instead of running on until the neighbour list refuses the positions."""
    from physnet.models.gns import RolloutDiverged

    model = small_gns()  # bounds [0, 1]^2

    def forward(g: dict[str, torch.Tensor]) -> torch.Tensor:  # x_{t+1} - 1 = 2 (x_t - 1) beyond x = 1
        last, prev = g[K.POS_HISTORY][:, -1], g[K.POS_HISTORY][:, -2]
        return torch.relu(last - 1.0) - (last - prev)

    model.forward = forward  # type: ignore[method-assign]
    window = 0.5 + 0.1 * random_window(20)
    window[0] = torch.tensor([1.01, 0.5], dtype=torch.float64)  # at rest, 0.01 past the right wall
    free = rollout(model, window, 12)
    outside = free[:, 0, 0] - 1.0
    torch.testing.assert_close(outside, 0.01 * 2.0 ** torch.arange(1, 13, dtype=torch.float64))
    with pytest.raises(RolloutDiverged, match="outside the domain") as stop:
        rollout(model, window, 12, max_excursion=1.0)
    k = stop.value.step  # frame k - 1 is 0.01 * 2^k outside: first k with 2^k > 100 is 7
    assert k == 7 and stop.value.excursion == pytest.approx(1.28)
    torch.testing.assert_close(stop.value.positions, free[:k], rtol=0, atol=0)
    broken = window.clone()
    broken[3, -1, 1] = float("nan")
    with pytest.raises(RolloutDiverged, match="inf outside") as stop:
        rollout(model, broken, 12)  # no limit given: only a non-finite position stops it
    assert stop.value.step == 0 and stop.value.positions.shape == (0, 20, 2)
    from physnet.train.gns import rollout_errors, runaway_excursion

    assert runaway_excursion(model) == 10.0  # 10 box lengths
    truth = torch.cat([window.transpose(0, 1), free.clone()])  # [C + 12, n, 2]
    scores = rollout_errors(model, truth, torch.zeros(20, dtype=torch.long))
    assert scores["diverged_at_step"] == 10 and scores["rollout_mse"] == math.inf  # 0.01 * 2^10 > 10


def test_a_clumping_rollout_scores_as_diverged(tmp_path: Path) -> None:
    """``rollout_errors``/``evaluate`` score a clumping rollout as diverged (MSE = inf, the step it
    stopped at) instead of running it to the end; the animation ends where the rollout stopped."""
    from physnet.train.gns import (
        evaluate,
        load_trajectories,
        peak_neighbours,
        rollout_errors,
        rollout_for_animation,
    )

    data = load_trajectories(FIXTURE, torch.float64)
    data.positions = [p[:40] for p in data.positions[:1]]
    data.particle_type = data.particle_type[:1]
    model = physnet.models.build_simulator(
        "gns", bounds=data.bounds.tolist(), latent_size=8, hidden_size=8, n_message_passing=1
    ).double()
    model.fit_statistics(data.positions)
    pos, ptype = data.positions[0], data.particle_type[0]
    assert 2 < peak_neighbours(model, pos) < 30
    healthy = rollout_errors(model, pos, ptype)
    assert healthy["diverged_at_step"] == -1 and np.isfinite(healthy["rollout_mse"])
    model = collapsing(model, centre=0.3)
    errors = rollout_errors(model, pos, ptype)
    assert errors["rollout_mse"] == float("inf") and 0 < errors["diverged_at_step"] < 34
    assert errors["cv_rollout_mse"] == healthy["cv_rollout_mse"]  # the baseline is still scored
    assert errors["true_peak_neighbours"] == healthy["true_peak_neighbours"] == peak_neighbours(model, pos)
    assert (
        errors["peak_neighbours"] > 4 * errors["true_peak_neighbours"]
    )  # the last frame kept is the clumped one
    unguarded = rollout_errors(model, pos, ptype, neighbour_factor=None)
    assert unguarded["diverged_at_step"] == -1 and np.isfinite(unguarded["rollout_mse"])
    assert unguarded["peak_neighbours"] == pos.shape[1] - 1  # clumped into one blob: all pairs
    summary = evaluate(model, data, verbose=False)
    assert summary["diverged_at_step"] == [errors["diverged_at_step"]]
    assert summary["mean_peak_neighbours"] == errors["peak_neighbours"]
    assert summary["mean_rollout_mse"] == float("inf") and summary["rollout_mse_ratio_cv_over_model"] == 0
    pred, truth = rollout_for_animation(model, data, 0)
    assert pred.shape == truth.shape == (6 + errors["diverged_at_step"], *pos.shape[1:])


def test_wall_lookahead_sees_the_wall_a_particle_is_about_to_cross() -> None:
    """``wall_lookahead`` adds the clipped wall distances of ``x_t + v_t``: negative for a particle
    that would end the next frame beyond a wall; it needs the wall features."""
    model = small_gns(wall_cutoff=0.1, wall_lookahead=True)  # radius 0.15
    plain = small_gns(wall_cutoff=0.1)
    window = random_window(2)
    v = torch.tensor([-0.03, 0.0], dtype=window.dtype)  # moving left, 0.03 per frame
    t = torch.arange(6, dtype=window.dtype).view(6, 1)
    window[0] = torch.tensor([0.12, 0.5], dtype=window.dtype) + (t - 5) * v  # at x = 0.12 now
    window[1] = torch.tensor([0.5, 0.5], dtype=window.dtype)  # at rest in the middle
    edges = model.build_edges(window[:, -1])
    ptype = torch.zeros(2, dtype=torch.long)
    f, _ = model.features(window, ptype, edges)
    f_plain, _ = plain.features(window, ptype, edges)
    assert f.shape[1] == f_plain.shape[1] + 4
    torch.testing.assert_close(f[:, :-4], f_plain)  # the plain features come first, unchanged
    ahead = f[0, -4:]  # lower x, lower y, upper x, upper y of x + v = (0.09, 0.5)
    torch.testing.assert_close(ahead, torch.tensor([0.9, 1, 1, 1], dtype=window.dtype))
    window[0] = window[0] + torch.tensor([-0.1, 0.0], dtype=window.dtype)  # now at 0.02, next at -0.01
    f, _ = model.features(window, ptype, model.build_edges(window[:, -1]))
    torch.testing.assert_close(f[0, -8], torch.tensor(0.2, dtype=window.dtype))  # now: inside
    torch.testing.assert_close(f[0, -4], torch.tensor(-0.1, dtype=window.dtype))  # next: beyond the wall
    torch.testing.assert_close(f[1, -4:], f[1, -8:-4])  # at rest: both the same
    assert model(graph(window)).shape == (2, 2)
    with pytest.raises(ValueError, match="wall_features"):
        small_gns(wall_features=False, wall_lookahead=True)


def test_selection_score_ranks_diverged_rollouts_last() -> None:
    """Fewer clumped rollouts always win; among equals the mean MSE decides (monotonically);
    when every rollout diverged the later stop wins."""
    from physnet.train.gns import selection_score

    def r(mse: float, stop: int = -1) -> dict[str, float]:
        return {"rollout_mse": math.inf if stop >= 0 else mse, "diverged_at_step": stop, "n_steps": 100.0}

    clean_bad, clean_good = [r(0.5), r(0.7)], [r(0.05), r(0.07)]
    one_diverged = [r(0.001), r(0.0, stop=90)]
    all_early, all_late = [r(0, stop=10), r(0, stop=20)], [r(0, stop=80), r(0, stop=99)]
    scores = [selection_score(x) for x in (clean_good, clean_bad, one_diverged, all_late, all_early)]
    assert scores == sorted(scores) and len(set(scores)) == 5
    assert selection_score(clean_good) == pytest.approx(0.06 / 1.06)
    assert (
        1 <= selection_score(one_diverged) < 2 <= selection_score(all_late) < selection_score(all_early) < 3
    )


# --------------------------------------------------------------------------- pushforward


def _pushforward_task(unroll: int = 3, target: str = "velocity", **kw):
    from physnet.train.gns import GNSTask, WindowDataset, collate_windows, load_trajectories

    data = load_trajectories(FIXTURE, torch.float64)
    model = small_gns(bounds=data.bounds.tolist(), radius=0.015, n_particle_types=1)
    model.fit_statistics(data.positions)
    args = dict(noise_std=0.0, pushforward_unroll=unroll, pushforward_prob=1.0, pushforward_target=target)
    args.update(kw)
    task = GNSTask(model, **args)
    windows = WindowDataset(data, 6, future=unroll)
    return data, task, windows, collate_windows


def test_windows_with_future_frames() -> None:
    """``future=U`` adds the U frames after the target and drops the U last windows of each trajectory."""
    from physnet.train.gns import WindowDataset

    data, _, windows, collate = _pushforward_task(unroll=3)
    plain = WindowDataset(data, 6)
    assert len(plain) - len(windows) == 3 * len(data)
    k, t = windows.index[-1]
    assert (
        t + 6 + 3 == data.positions[k].shape[0] - 1
    )  # the last window's last future frame is the last frame
    item = windows[-1]
    torch.testing.assert_close(item[K.FUTURE_POS], data.positions[k][t + 7 : t + 10].transpose(0, 1))
    batch = collate([windows[0], windows[5]])  # two windows of trajectory 0
    assert batch[K.FUTURE_POS].shape == (2 * windows[0][K.Z].shape[0], 3, 2)
    assert K.FUTURE_POS not in plain[0]
    with pytest.raises(ValueError, match="future"):
        WindowDataset(data, 6, future=-1)


@pytest.mark.parametrize("unroll", [1, 3])
def test_push_forward_is_the_models_own_rollout(unroll: int) -> None:
    """The pushed-forward window is the model's rollout from the input window; the truth it is
    compared with is the same frames of the data, and the target is the frame after them."""
    data, task, windows, collate = _pushforward_task(unroll=3)
    k, t = windows.index[40]
    batch = collate([windows[40]])
    window = batch[K.POS_HISTORY]
    inputs, history, next_pos = task.push_forward(batch, window, unroll)
    predicted = rollout(task.model, window, unroll)  # [unroll, n, dim]
    torch.testing.assert_close(inputs[:, -unroll:], predicted.transpose(0, 1), rtol=0, atol=1e-12)
    torch.testing.assert_close(inputs[:, : 6 - unroll], window[:, unroll:], rtol=0, atol=0)
    truth = data.positions[k]
    torch.testing.assert_close(history, truth[t + unroll : t + unroll + 6].transpose(0, 1), rtol=0, atol=0)
    torch.testing.assert_close(next_pos, truth[t + unroll + 6], rtol=0, atol=0)
    assert float((inputs - history).abs().max()) > 0  # an untrained model does drift
    with pytest.raises(ValueError, match="frames after the target"):
        task.push_forward(batch, window, 4)


@pytest.mark.parametrize("target", ["velocity", "position"])
def test_pushforward_targets_undo_the_models_own_error(target: str) -> None:
    """With the ``velocity`` target the Euler step from the pushed-forward window reproduces the
    true next velocity; with ``position`` it lands on the true next position."""
    _, task, windows, collate = _pushforward_task(unroll=2, target=target)
    batch = collate([windows[10], windows[200]])
    torch.manual_seed(0)
    inputs, acc, error = task.training_example(batch, unroll=2)
    torch.manual_seed(0)
    _, history, next_pos = task.push_forward(batch, batch[K.POS_HISTORY], 2)
    torch.testing.assert_close(error, inputs - history, rtol=0, atol=0)
    step = euler_step(inputs, acc)
    if target == "position":
        torch.testing.assert_close(step, next_pos, rtol=0, atol=1e-15)
    else:
        torch.testing.assert_close(step - inputs[:, -1], next_pos - history[:, -1], rtol=0, atol=1e-15)
        assert float((step - next_pos).abs().max()) > 1e-6  # the drift itself is kept
    # unroll 0: the paper's noisy one-step example, untouched by pushforward
    plain_inputs, plain_acc, _ = task.training_example(batch, unroll=0)
    torch.testing.assert_close(plain_inputs, batch[K.POS_HISTORY])  # noise_std = 0
    torch.testing.assert_close(
        plain_acc, batch[K.NEXT_POS] - 2 * batch[K.POS_HISTORY][:, -1] + batch[K.POS_HISTORY][:, -2]
    )


def test_wall_excursions_move_particles_behind_the_wall_and_aim_back() -> None:
    """``wall_excursion_prob``: particles within ``wall_excursion_depth`` of a wall are moved out
    along its normal, their velocities kept, up to that depth behind it; their target lands the
    Euler step on the true next position; the rest keep the plain noisy example."""
    from physnet.train.gns import GNSTask

    model = small_gns()  # bounds [0, 1]^2
    last = torch.tensor([[0.5, 0.5], [0.03, 0.4], [0.6, 0.98], [0.2, 0.02]], dtype=torch.float64)
    vel = torch.tensor([[0.0, -0.01], [-0.01, 0.0], [0.0, 0.01], [0.005, -0.01]], dtype=torch.float64)
    steps = torch.arange(-model.window + 1, 1, dtype=torch.float64)[None, :, None]  # [1, C, 1]
    history = last[:, None] + steps * vel[:, None]  # [4, C, 2] straight lines
    next_pos = last + vel + torch.tensor([0.0, -1e-4], dtype=torch.float64)
    batch = {K.POS_HISTORY: history, K.NEXT_POS: next_pos, K.Z: torch.zeros(4, dtype=torch.long)}
    task = GNSTask(model, noise_std=0.0, wall_excursion_prob=1.0, wall_excursion_depth=0.05)
    inputs, target, error = task.training_example(batch)
    moved = torch.tensor([False, True, True, True])
    torch.testing.assert_close(inputs[~moved], history[~moved], rtol=0, atol=0)
    shift = (inputs - history)[:, -1]
    torch.testing.assert_close(
        inputs - history, shift[:, None].expand_as(history), rtol=0, atol=0
    )  # same velocities
    assert shift[1, 0] < -0.03 and shift[2, 1] > 0.02 and shift[3, 1] < -0.02  # out through the nearest wall
    assert shift[1, 1] == shift[2, 0] == shift[3, 0] == 0.0
    behind = torch.stack([-inputs[1, -1, 0], inputs[2, -1, 1] - 1.0, -inputs[3, -1, 1]])
    assert bool(((behind > 0) & (behind < 0.05)).all())
    torch.testing.assert_close(euler_step(inputs, target)[moved], next_pos[moved], rtol=0, atol=1e-15)
    torch.testing.assert_close(
        target[0], next_pos[0] - 2 * history[0, -1] + history[0, -2], rtol=0, atol=1e-15
    )  # untouched: the plain target
    torch.testing.assert_close(error, inputs - history, rtol=0, atol=0)
    draws = GNSTask(model, wall_excursion_prob=0.25, wall_excursion_depth=2.0).wall_excursion(
        torch.rand(4000, model.window, 2, dtype=torch.float64)
    )[1]
    assert 0.2 < float(draws.double().mean()) < 0.3  # every particle is within 2 of a wall here
    with pytest.raises(ValueError, match="wall_excursion_depth"):
        GNSTask(model, wall_excursion_prob=0.5)
    with pytest.raises(ValueError, match="wall_excursion_prob"):
        GNSTask(model, wall_excursion_prob=1.5, wall_excursion_depth=0.1)


def test_wall_penalty_charges_only_landing_further_out_than_the_target() -> None:
    """``wall_penalty``: the hinge is zero inside the box and wherever the prediction lands no
    further out than the target; beyond that it is the squared normalised overshoot, and its
    gradient pushes the prediction back into the box."""
    from physnet.train.gns import GNSTask

    model = small_gns()  # bounds [0, 1]^2
    with torch.no_grad():
        model.acc_std.copy_(torch.tensor([0.01, 0.02]))
    last = torch.tensor([[0.5, 0.5], [0.3, 0.01], [0.99, 0.6], [0.99, 0.4]], dtype=torch.float64)
    history = last[:, None].expand(-1, model.window, -1).clone()  # at rest: lands at last + a
    target = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.015, 0.0], [0.015, 0.0]], dtype=torch.float64)
    pred = torch.tensor([[0.3, -0.4], [0.0, -0.03], [0.013, 0.0], [0.02, 0.0]], dtype=torch.float64)
    pred.requires_grad_(True)
    task = GNSTask(model, wall_penalty=10.0)
    penalty = task.outside_penalty(history, pred, target)
    # particle 0: far off but inside; 1: 0.02 through the floor (target inside); 2: 0.003 out, less
    # than the target's 0.005; 3: 0.01 out, 0.005 further than the target
    expected = ((0.02 / 0.02) ** 2 + (0.005 / 0.01) ** 2) / 4
    assert float(penalty) == pytest.approx(expected, rel=1e-6)
    penalty.backward()
    assert pred.grad[1, 1] < 0 and pred.grad[3, 0] > 0  # descent: back up through the floor, back left
    assert float(pred.grad[0].abs().sum()) == float(pred.grad[2].abs().sum()) == 0.0
    assert float(task.outside_penalty(history, target, target)) == 0.0
    with pytest.raises(ValueError, match="wall_penalty"):
        GNSTask(model, wall_penalty=-1.0)


def test_unroll_sampling_schedule() -> None:
    from physnet.train.gns import GNSTask

    model = small_gns()
    never = GNSTask(model, pushforward_unroll=0)
    assert {never.sample_unroll(s) for s in range(0, 1000, 10)} == {0}
    late = GNSTask(model, pushforward_unroll=3, pushforward_prob=1.0, pushforward_start_step=100)
    assert {late.sample_unroll(s) for s in range(100)} == {0}
    assert {late.sample_unroll(100) for _ in range(200)} == {1, 2, 3}
    half = GNSTask(model, pushforward_unroll=2, pushforward_prob=0.5, seed=1)
    draws = [half.sample_unroll(0) for _ in range(2000)]
    assert 0.45 < draws.count(0) / 2000 < 0.55 and set(draws) == {0, 1, 2}
    for bad, match in (
        (dict(pushforward_unroll=-1), "pushforward_unroll"),
        (dict(pushforward_prob=1.5), "pushforward_prob"),
        (dict(pushforward_target="acceleration"), "pushforward_target"),
    ):
        with pytest.raises(ValueError, match=match):
            GNSTask(model, **bad)


def test_pushforward_training_runs_from_the_config(tmp_path: Path) -> None:
    """``task.pushforward_*`` and ``task.wall_penalty`` reach the task: 4 steps with pushforward
    from step 2 log the unroll lengths (0, 0 then 1..2), the input's error against the truth and
    the wall hinge."""
    import csv

    from physnet.train.gns import load_gns_config, train_gns

    cfg = load_gns_config(
        ROOT / "examples" / "configs" / "gns_water.yaml",
        [
            f"run_dir={tmp_path / 'run'}",
            f"data.train={FIXTURE}",
            FIXTURE_GRAVITY,
            "data.valid=",
            "data.test=",
            "data.val_rollouts=0",
            "model.latent_size=8",
            "model.hidden_size=8",
            "model.n_message_passing=1",
            "trainer.max_steps=4",
            "trainer.log_every_n_steps=1",
            "task.pushforward_unroll=2",
            "task.pushforward_prob=1",
            "task.pushforward_start_step=2",
            "task.wall_penalty=10",
        ],
    )
    run = train_gns(cfg)
    with open(run / "logs" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/unroll")]
    assert all(float(r["train/wall_penalty"]) >= 0 for r in rows)
    unrolls = [float(r["train/unroll"]) for r in rows]
    assert len(unrolls) == 4 and unrolls[:2] == [0.0, 0.0] and all(u in (1.0, 2.0) for u in unrolls[2:])
    errors = [float(r["train/input_error"]) for r in rows]
    assert all(math.isfinite(e) and e > 0 for e in errors)


# ---------------------------------------------------------------- static wall particles
def test_boundary_points_cover_the_walls_and_lie_outside_the_box() -> None:
    """Rows on and outside every wall, corners included, at most ``spacing`` apart."""
    bounds = torch.tensor(BOUNDS, dtype=torch.float64)
    pts = GNS.boundary_points(bounds, spacing=0.3, layers=2)  # ticks 0, 1/4, ..., 1 plus one row out
    step = 0.25
    ticks = torch.arange(-1, 6, dtype=torch.float64) * step  # -0.25 .. 1.25
    assert pts.shape == (7 * 7 - 3 * 3, 2)  # the lattice minus its strictly interior points
    inside = ((pts > 0) & (pts < 1)).all(dim=-1)
    assert not bool(inside.any())
    assert torch.isclose(pts.unsqueeze(-1), ticks).any(dim=-1).all()  # every coordinate on a tick
    for corner in ([-0.25, -0.25], [1.25, 1.25], [0.0, 1.0]):
        assert bool((pts - torch.tensor(corner, dtype=torch.float64)).norm(dim=-1).min() < 1e-12)
    # the default model: spacing R / 2, ceil(R / spacing) = 2 rows, as many rows as the radius needs
    model = small_gns(boundary_particles=True)  # radius 0.15 -> spacing 0.075 -> 14 intervals
    assert model.boundary_pos.shape == (17 * 17 - 13 * 13, 2)
    assert float(model.boundary_pos.min()) == pytest.approx(-1 / 14)


def test_wall_particles_are_the_ones_within_the_radius() -> None:
    model = small_gns(boundary_particles=True)
    pos = torch.tensor([[0.5, 0.5], [0.05, 0.5], [0.02, 0.97], [0.5, 1.01]], dtype=torch.float64)
    receiver, wall = model.boundary_edges(pos)
    dist = torch.cdist(pos, model.boundary_pos)
    expected = torch.nonzero(dist < model.radius)
    got = torch.stack([receiver, wall], dim=-1)
    assert sorted(map(tuple, got.tolist())) == sorted(map(tuple, expected.tolist()))
    assert 0 not in receiver.tolist()  # the particle in the middle sees no wall particle
    assert {1, 2, 3} <= set(receiver.tolist())  # one outside the box sees them too
    # boundary_radius = 2 R: the walls reach twice as far, with 4 rows (2 by default) R / 2 apart
    far = small_gns(boundary_particles=True, boundary_radius=0.3)
    step = 1 / 14  # 1 / ceil(1 / (R / 2))
    assert float(far.boundary_pos.min()) == pytest.approx(-3 * step)
    assert float(model.boundary_pos.min()) == pytest.approx(-step)
    receiver, wall = far.boundary_edges(pos)
    expected = torch.nonzero(torch.cdist(pos, far.boundary_pos) < 0.3)
    assert sorted(map(tuple, torch.stack([receiver, wall], -1).tolist())) == sorted(
        map(tuple, expected.tolist())
    )
    reach = torch.cdist(pos[1:2], far.boundary_pos[wall[receiver == 1]])  # the particle 0.05 from a wall
    assert 0 not in receiver.tolist() and 0.2 < float(reach.max()) < 0.3
    with pytest.raises(ValueError, match="boundary_radius"):
        small_gns(boundary_particles=True, boundary_radius=0.0)


def test_wall_particles_act_only_near_the_walls() -> None:
    """Same weights: a particle more than R from every wall gets the same acceleration with and
    without wall particles (they reach only particles within R, and only as senders); one near
    a wall gets a different one. The wall particles themselves get no acceleration."""
    plain = small_gns(n_particle_types=1)
    walls = small_gns(n_particle_types=1, boundary_particles=True)
    state = plain.state_dict()
    state["type_embedding.weight"] = torch.cat([state["type_embedding.weight"], torch.randn(1, 16).double()])
    state.update({k: v for k, v in walls.state_dict().items() if k.startswith("boundary_")})
    walls.load_state_dict(state)
    window = random_window(40)
    window[0] = (
        window[0] - window[0, -1] + torch.tensor([0.05, 0.5], dtype=window.dtype)
    )  # near the left wall
    out_plain, out_walls = plain(graph(window)), walls(graph(window))
    assert out_walls.shape == (40, 2)
    far = (window[:, -1] > plain.radius).all(-1) & (window[:, -1] < 1 - plain.radius).all(-1)
    near = plain.build_edges(window[:, -1])  # particles that hear from a particle near the wall differ too
    touched = torch.zeros(40, dtype=torch.bool)
    touched[~far] = True
    for _ in range(len(plain.processor)):  # M hops from the particles within R of a wall
        touched[near[0][touched[near[1]]]] = True
    assert bool((~touched).sum() > 5)
    torch.testing.assert_close(out_walls[~touched], out_plain[~touched], rtol=0, atol=1e-14)
    assert float((out_walls[0] - out_plain[0]).detach().abs().max()) > 1e-6


def test_wall_particle_classes_change_nothing() -> None:
    """One sender node per distinct wall-particle input gives the same accelerations as one node
    per wall particle, and the wall type's embedding is trained."""
    model = small_gns(boundary_particles=True)
    assert model.boundary_class_pos.shape[0] < model.boundary_pos.shape[0] / 2  # 56 of 120
    window = random_window(40)
    window[:5] = window[:5] - window[:5, -1:] + torch.tensor([0.04, 0.3], dtype=window.dtype)
    window[5:8] = window[5:8] - window[5:8, -1:] + torch.tensor([0.96, 0.98], dtype=window.dtype)
    ptype = torch.randint(0, 2, (40,), generator=torch.Generator().manual_seed(3))
    grouped = model(graph(window, ptype))
    each = copy.deepcopy(model)
    each.boundary_class = torch.arange(model.boundary_pos.shape[0])
    each.boundary_class_pos = model.boundary_pos.clone()
    torch.testing.assert_close(each(graph(window, ptype)), grouped, rtol=0, atol=1e-13)
    grouped.pow(2).sum().backward()
    assert float(model.type_embedding.weight.grad[2].abs().max()) > 0  # the wall type's row
    # permuting the particles permutes the output, walls or not
    perm = torch.randperm(40, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(
        model(graph(window[perm], ptype[perm])), grouped[perm].detach(), rtol=0, atol=1e-13
    )


def test_boundary_particle_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="boundary_spacing"):
        small_gns(boundary_particles=True, boundary_spacing=0.0)
    with pytest.raises(ValueError, match="boundary_layers"):
        small_gns(boundary_particles=True, boundary_layers=0)
    assert small_gns().boundary_pos.shape == (0, 2)  # off by default, and no extra embedding row
    assert small_gns().type_embedding.num_embeddings == 2


def test_wall_nodes_reach_the_nearest_point_on_each_wall() -> None:
    """``wall_edges``: one edge per wall within ``boundary_radius``, its displacement pointing to
    the particle's nearest point on that wall (in units of R), clamped to the wall behind it."""
    model = small_gns(wall_edges=True, boundary_radius=0.3)  # R = 0.15, reach 2 R
    pos = torch.tensor([[0.5, 0.5], [0.1, 0.5], [0.05, 0.98], [0.5, -0.01], [1.02, 0.6]], dtype=torch.float64)
    receiver, wall, disp, distance = model.wall_node_edges(pos)
    torch.testing.assert_close(distance, torch.linalg.vector_norm(disp, dim=-1))  # clamped: |disp|
    got = {(int(r), int(w)): d.tolist() for r, w, d in zip(receiver, wall, disp, strict=True)}
    expected = {  # walls: 0 left, 1 floor, 2 right, 3 lid
        (1, 0): [-0.1 / 0.15, 0.0],
        (2, 0): [-0.05 / 0.15, 0.0],
        (2, 3): [0.0, 0.02 / 0.15],
        (3, 1): [0.0, 0.0],  # behind the floor: put on it
        (4, 2): [0.0, 0.0],  # behind the right wall
    }
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(
            torch.tensor(got[key], dtype=torch.float64), torch.tensor(value, dtype=torch.float64)
        )
    near = small_gns(wall_edges=True)  # default reach R: the particle 0.1 from the left wall only
    assert near.wall_node_edges(pos[1:2])[0].tolist() == [0]
    assert near.wall_node_edges(torch.tensor([[0.2, 0.5]], dtype=torch.float64))[0].numel() == 0
    with pytest.raises(ValueError, match="choose one"):
        small_gns(wall_edges=True, boundary_particles=True)


def test_signed_wall_distance_continues_through_the_wall() -> None:
    """``signed_wall_distance``: behind a wall the displacement points back into the box and the
    distance column is negative; both are linear in the position across the wall."""
    model = small_gns(wall_edges=True, signed_wall_distance=True, boundary_radius=0.3)  # R = 0.15
    pos = torch.tensor([[0.5, 0.03], [0.5, -0.03], [1.06, 0.5]], dtype=torch.float64)
    receiver, wall, disp, distance = model.wall_node_edges(pos)
    assert receiver.tolist() == [0, 1, 2] and wall.tolist() == [1, 1, 2]  # floor, floor, right wall
    torch.testing.assert_close(distance, torch.tensor([0.2, -0.2, -0.4], dtype=torch.float64))
    expected = torch.tensor([[0.0, -0.2], [0.0, 0.2], [-0.4, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(disp, expected)  # inside: towards the wall; behind: back to it
    # the wall edges' features fed to the network: [disp, signed distance]
    window = pos[:, None, :].expand(-1, model.window, -1).contiguous()
    g = graph(window)
    edge_index = model.build_edges(window[:, -1])
    node_in, edge_in = model.features(window, g[K.Z], edge_index)
    _, edge_all, index_all = model._add_wall_nodes(window[:, -1], node_in, edge_in, edge_index)
    from_walls = index_all[1] >= 3
    torch.testing.assert_close(edge_all[from_walls], torch.cat([expected, distance[:, None]], -1))
    clamped = small_gns(wall_edges=True, boundary_radius=0.3)
    clamped.load_state_dict(model.state_dict())
    inside = graph(window[:1])
    with torch.no_grad():
        torch.testing.assert_close(clamped(inside), model(inside), rtol=0, atol=0)  # same in the box
        assert float((clamped(g) - model(g))[1:].abs().max()) > 1e-6  # they differ behind a wall
    with pytest.raises(ValueError, match="needs wall_edges"):
        small_gns(signed_wall_distance=True)


def test_wall_damping_removes_a_learned_fraction_of_the_outward_speed() -> None:
    """``wall_damping`` adds ``-g max(0, v . n_w) n_w`` per wall within ``boundary_radius``,
    ``g`` in (0, 1): nothing for a particle moving into the box or far from every wall, at
    most its whole outward speed, per wall in a corner; the rest of the model is unchanged."""
    kw = dict(wall_edges=True, signed_wall_distance=True, boundary_radius=0.3)  # R = 0.15
    damped = small_gns(wall_damping="velocity", **kw)
    plain = small_gns(**kw)
    missing, unexpected = plain.load_state_dict(damped.state_dict(), strict=False)
    assert not missing and unexpected and all(k.startswith("wall_gate.") for k in unexpected)
    last = torch.tensor([[0.5, 0.1], [0.35, 0.12], [0.5, 0.5], [0.1, 0.1], [0.5, -0.02]], dtype=torch.float64)
    velocity = torch.tensor(
        [[0.002, -0.01], [0.0, 0.01], [0.0, -0.02], [-0.01, -0.02], [0.0, -0.005]], dtype=torch.float64
    )  # down to the floor; up, away from it; down but far from every wall; into the corner; behind
    t = torch.arange(6, dtype=torch.float64).view(1, 6, 1) - 5
    window = last[:, None, :] + velocity[:, None, :] * t  # [n, 6, 2], constant velocity
    g = graph(window)
    with torch.no_grad():
        extra = damped(g) - plain(g)  # [n, 2]
    outward = torch.tensor(  # what the walls may remove, along +x / +y (back into the box)
        [[0.0, 0.01], [0.0, 0.0], [0.0, 0.0], [0.01, 0.02], [0.0, 0.005]], dtype=torch.float64
    )
    assert extra[1].abs().max() == 0 and extra[2].abs().max() == 0  # inward; no wall within reach
    assert bool(((extra >= 0) & (extra <= outward)).all()) and bool((extra[outward > 0] > 0).all())
    with torch.no_grad():
        damped.wall_gate[-1].bias.fill_(50.0)  # g = 1: the whole outward speed goes
        torch.testing.assert_close(damped(g) - plain(g), outward, rtol=0, atol=1e-15)
    # the gate learns: gradients reach its parameters through the predicted accelerations
    damped.wall_gate[-1].bias.data.fill_(0.0)
    damped(g).sum().backward()
    assert float(damped.wall_gate[-1].bias.grad.abs()) > 0
    with pytest.raises(ValueError, match="wall_damping.*needs wall_edges"):
        small_gns(wall_damping="step")
    with pytest.raises(ValueError, match="wall_damping must be"):
        small_gns(wall_damping="grid", **kw)
    assert small_gns(wall_damping=True, **kw).wall_damping == "velocity"  # checkpoints of the first form


def test_step_wall_damping_acts_on_the_velocity_after_the_forces() -> None:
    """``wall_damping="step"`` removes the outward part of ``v + a'`` (``a'`` the decoder's
    acceleration): with the gate at 1 no particle within reach of a wall keeps any velocity
    towards it after the step, even one at rest that the decoder pushes into the wall; the
    others are untouched."""
    kw = dict(wall_edges=True, signed_wall_distance=True, boundary_radius=0.2)  # R = 0.15
    damped = small_gns(wall_damping="step", **kw)
    plain = small_gns(**kw)
    plain.load_state_dict(damped.state_dict(), strict=False)
    window = random_window(40, seed=3)
    window[:5] = window[:5, -1:].clone() * torch.tensor([1.0, 0.0], dtype=torch.float64) + torch.tensor(
        [0.0, 0.01], dtype=torch.float64
    )  # five particles at rest 0.01 above the floor
    g = graph(window)
    with torch.no_grad():
        damped.wall_gate[-1].bias.fill_(50.0)
        a_plain, a_damped = plain(g), damped(g)
    after = window[:, -1] - window[:, -2] + a_damped  # [n, 2] velocity after the step
    last = window[:, -1]
    near = torch.cat([last < 0.2, last > 0.8], dim=-1)  # [n, 4]: left, floor, right, lid within reach
    outward = torch.cat([-after, after], dim=-1)  # [n, 4] velocity towards each wall
    assert float(outward[near].max()) <= 1e-15  # nothing moves towards a wall within reach
    v_plain = window[:, -1] - window[:, -2] + a_plain
    was_out = (torch.cat([-v_plain, v_plain], dim=-1) > 0) & near
    assert bool(was_out[:5, 1].all())  # the decoder alone would push the resting particles down
    untouched = ~was_out.any(dim=-1)
    assert bool(untouched.any())
    torch.testing.assert_close(a_damped[untouched], a_plain[untouched], rtol=0, atol=0)


@pytest.mark.parametrize("mode", ["velocity", "step"])
def test_wall_damping_range_confines_the_damping_to_particles_arriving_at_a_wall(mode: str) -> None:
    """With ``wall_damping_range`` r and the gate at 1, a particle loses ``e = clip(1 - d'/r, 0, 1)``
    of its outward velocity, ``d'`` the distance of its arrival point ``x_t + u`` inside the wall
    (``u`` the velocity, plus the decoder's acceleration for ``"step"``): all of it on or
    behind the wall, half at r / 2, none from r on."""
    kw = dict(wall_edges=True, signed_wall_distance=True, boundary_radius=0.2, wall_damping=mode)
    r = 0.04
    confined = small_gns(wall_damping_range=r, **kw)
    plain = small_gns(wall_edges=True, signed_wall_distance=True, boundary_radius=0.2)
    plain.load_state_dict(confined.state_dict(), strict=False)
    # particles 0.08 apart in x (no side wall in reach), falling at 0.05 per frame towards the floor
    # from heights that put their constant-velocity arrival behind, on, and inside the floor
    height = torch.tensor([0.03, 0.05, 0.07, 0.09, 0.11, 0.15], dtype=torch.float64)
    n = height.shape[0]
    t = torch.arange(6, dtype=torch.float64) - 5.0  # the last frame at t = 0
    window = torch.zeros(n, 6, 2, dtype=torch.float64)
    window[..., 0] = 0.3 + 0.08 * torch.arange(n, dtype=torch.float64).unsqueeze(1)
    window[..., 1] = height.unsqueeze(1) - 0.05 * t
    with torch.no_grad():
        confined.wall_gate[-1].bias.fill_(50.0)
        a_plain, a_confined = plain(graph(window)), confined(graph(window))
    u = window[:, -1] - window[:, -2] + (a_plain if mode == "step" else 0.0)  # [n, 2]
    arrival = window[:, -1, 1] + u[:, 1] - BOUNDS[1][0]  # d' of the floor
    weight = (1.0 - arrival / r).clamp(0.0, 1.0)
    assert float(weight.min()) == 0.0 and float(weight.max()) == 1.0
    assert bool(((weight > 0) & (weight < 1)).any())
    removed = a_confined - a_plain
    torch.testing.assert_close(removed[:, 0], torch.zeros(n, dtype=torch.float64), rtol=0, atol=0)
    torch.testing.assert_close(removed[:, 1], weight * (-u[:, 1]).clamp_min(0.0), rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="set wall_damping as well"):
        small_gns(wall_edges=True, wall_damping_range=r)
    with pytest.raises(ValueError, match="length > 0"):
        small_gns(wall_damping_range=0.0, **kw)


def test_a_flat_wall_acts_the_same_all_along_it() -> None:
    """With wall nodes (and no wall-distance features) sliding water along the floor changes
    nothing, as for a real flat floor; wall particles make the floor bumpy."""
    window = 0.1 * random_window(30)  # 0.1 wide, touching the floor
    window[..., 0] += 0.3
    slid = window + torch.tensor([0.25, 0.0], dtype=torch.float64)
    assert float(window[..., 0].min()) > 0.15 + 1e-3 and float(slid[..., 0].max()) < 0.85 - 1e-3
    for kw, flat in (({"wall_edges": True}, True), ({"boundary_particles": True}, False)):
        model = _pairwise(wall_features=False, **kw)
        with torch.no_grad():
            a, b = model(graph(window)), model(graph(slid))
        assert float((a - model.acc_mean).abs().max()) > 1e-6  # the floor acts
        if flat:
            torch.testing.assert_close(a, b, rtol=0, atol=1e-15)
        else:
            assert float((a - b).abs().max()) > 1e-9


def _pairwise(**kw) -> GNS:
    return small_gns(pairwise_decoder=True, body_acceleration=[0.0, -1.5e-4], **kw)


def test_pairwise_decoder_is_the_antisymmetric_sum_of_its_mlp() -> None:
    """The factorised first layer equals phi on the concatenation, f_ij = phi(i, j) - phi(j, i)."""
    model = _pairwise(wall_features=False)
    window = random_window(30)
    g = graph(window)
    edge_index = model.build_edges(window[:, -1])
    node_in, edge_in = model.features(window, g[K.Z], edge_index)
    node, edge = model.node_encoder(node_in), model.edge_encoder(edge_in)
    for block in model.processor:
        node, edge = block(node, edge, edge_index)
    i, j = edge_index
    d, r = edge_in[:, :2], edge_in[:, 2:]
    f = model.decoder(torch.cat([node[i], node[j], d, r], -1)) - model.decoder(
        torch.cat([node[j], node[i], -d, r], -1)
    )
    expected = torch.zeros(30, 2, dtype=torch.float64).index_add_(0, i, f) * model.acc_std + model.acc_mean
    assert edge_index.shape[1] > 60
    torch.testing.assert_close(model(g), expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("walls", ["none", "features", "particles", "wall_edges"])
def test_pairwise_decoder_conserves_momentum_away_from_walls(walls: str) -> None:
    """Pair terms cancel (Newton's third law): the accelerations of particles that touch no wall
    sum to n times the body acceleration, and a lone particle falls freely. Wall particles
    within reach add a net force (the floor holds water up)."""
    kw = {
        "none": {"wall_features": False},
        "features": {},
        "particles": {"boundary_particles": True},
        "wall_edges": {"wall_edges": True},
    }[walls]
    model = _pairwise(**kw)
    window = 0.5 + 0.5 * (random_window(40) - 0.5)  # about [0.35, 0.65]^2: no wall within R = 0.15
    assert float(torch.minimum(window, 1 - window).min()) > 0.16
    assert model.build_edges(window[:, -1]).shape[1] > 100
    with torch.no_grad():
        acc = model(graph(window))
    total = acc.sum(0)
    torch.testing.assert_close(total, 40 * model.acc_mean, rtol=0, atol=1e-15 * 40)
    assert float((acc - model.acc_mean).abs().max()) > 1e-5  # yet each particle is pushed around
    lone = torch.tensor([[0.5, 0.5]], dtype=torch.float64).expand(1, 6, 2) + torch.zeros(1, 6, 2)
    torch.testing.assert_close(model(graph(lone)), model.acc_mean[None], rtol=0, atol=1e-18)
    if walls in ("particles", "wall_edges"):  # near the floor the walls push: momentum is not conserved
        floor = window.clone()
        floor[..., 1] -= float(window[:, -1, 1].min()) - 0.01
        with torch.no_grad():
            assert float((model(graph(floor)).sum(0) - 40 * model.acc_mean).abs().max()) > 1e-6


def test_pairwise_decoder_symmetries_and_arguments() -> None:
    model = _pairwise(wall_features=False)
    inputs, kinds = _inputs()
    report = check_particle_symmetries(
        _as_3d(model), inputs, kinds, "vector", ("translation", "permutation"), group_key=None
    )
    assert max(report.values()) <= 1e-10, report
    with pytest.raises(ValueError, match="pairwise_decoder.*body_acceleration"):
        small_gns(pairwise_decoder=True)
    assert _pairwise().hparams["pairwise_decoder"] is True


def test_body_acceleration_must_match_the_free_fall_of_the_training_data() -> None:
    """Gravity in length / frame^2 depends on the frame step: the 4 ms config's value on the
    2 ms fixture is refused with the value the data show."""
    from physnet.train.gns import check_body_acceleration, load_trajectories

    data = load_trajectories(FIXTURE)
    kw = {"latent_size": 8, "hidden_size": 8, "n_message_passing": 1}
    with pytest.raises(ValueError, match=r"free-fall frames .* accelerate at \[.*-3.92e-05\]"):
        check_body_acceleration(GNS(body_acceleration=[0.0, -1.568e-4], **kw), data)
    check_body_acceleration(GNS(body_acceleration=[0.0, -3.92e-5], **kw), data)
    check_body_acceleration(GNS(**kw), data)  # learnt: nothing to check
