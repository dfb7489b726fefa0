"""GNS model (physnet.models.gns): shapes, symmetries (shared kit), walls, decoders, damping, rollout."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import physnet
from physnet.data import keys as K
from physnet.data.trajectories import load_trajectories
from physnet.models.gns import DECODERS, GNS, WALLS, WallDamping
from physnet.models.simulator import RolloutDiverged, rollout
from physnet.sim.box import escaped_particles
from physnet.sim.frames import (
    constant_velocity_rollout,
    euler_step,
    noisy_target_acceleration,
    random_walk_noise,
)
from physnet.testing import TOLERANCES, check_particle_symmetries
from physnet.train.gns_eval import free_fall_response, rollout_errors, runaway_excursion

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "data" / "mpm_water" / "water_fixture.npz"
BOUNDS = [[0.0, 1.0], [0.0, 1.0]]


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


def collapsing(model: GNS, centre: float = 0.5) -> GNS:
    """``model`` with its network replaced by an acceleration that stops every particle and
    pulls it halfway to ``centre``: the predicted particles pile up within a few frames."""

    def forward(g: dict[str, torch.Tensor]) -> torch.Tensor:
        last, prev = g[K.POS_HISTORY][:, -1], g[K.POS_HISTORY][:, -2]
        return -(last - prev) - 0.5 * (last - centre)

    model.forward = forward  # type: ignore[method-assign]
    return model


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


def _pairwise(**kw) -> GNS:
    return small_gns(decoder="pairwise", body_acceleration=[0.0, -1.5e-4], **kw)


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


def test_translation_invariance_and_permutation_equivariance_without_walls() -> None:
    model = small_gns(walls="none")
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
    model3 = small_gns(dim=3, bounds=[[0.0, 1.0]] * 3, walls="none")
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
        {"walls": "features"},
        {"walls": "nodes"},
        {"walls": "nodes", "decoder": "pairwise", "body_acceleration": [0, -1e-3]},
        {"walls": "nodes", "wall_damping_range": 0.1},
    ],
    ids=["features", "wall_nodes", "wall_nodes_pairwise", "wall_damping"],
)
def test_walls_break_translation_invariance(walls: dict) -> None:
    """With wall features on, the distance to the walls is an input: a translation moves the
    particles relative to the fixed walls and changes the accelerations. Translation is then
    not a symmetry of the model, by design (the walls are not translated with the fluid).
    Wall nodes keep permutation equivariance (through the kit)."""
    model = small_gns(**walls)
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


def test_body_acceleration_is_the_offset_of_the_decoder() -> None:
    """With a known body acceleration, fit_statistics keeps it as the offset: a zero decoder
    predicts free fall exactly; without, the offset is the data's mean acceleration."""
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
        torch.nn.init.zeros_(model.decoder.mlp[-1].weight)
        torch.nn.init.zeros_(model.decoder.mlp[-1].bias)
        ratio = free_fall_response(model, pos, torch.zeros(9, dtype=torch.long))["free_fall_ratio"]
        assert ratio == pytest.approx(1.0 if body else 0.5)
    assert (
        physnet.models.build_simulator("gns", body_acceleration=g, **kwargs).hparams["body_acceleration"] == g
    )
    with pytest.raises(ValueError, match="body_acceleration"):
        physnet.models.build_simulator("gns", body_acceleration=[0.0, -1.0, 0.0], **kwargs)


def test_wall_cutoff_sets_how_far_walls_are_seen() -> None:
    """Wall distances are divided by ``wall_cutoff`` (default ``radius``) and clipped to [-1, 1]."""
    near = small_gns()  # radius 0.15
    far = small_gns(wall_cutoff=0.3)
    assert near.walls.cutoff == near.radius == 0.15
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


def test_rollout_stops_when_the_particles_clump() -> None:
    """A rollout whose particles pile up raises ``RolloutDiverged`` once a step's graph has more
    neighbours per particle than ``max_mean_neighbours``, carrying the frames predicted before it;
    without a limit the same rollout runs on and its graph ends up all-pairs."""
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
    with pytest.raises(RolloutDiverged, match="outside the box") as stop:
        rollout(model, window, 12, max_excursion=1.0)
    k = stop.value.step  # frame k - 1 is 0.01 * 2^k outside: first k with 2^k > 100 is 7
    assert k == 7 and stop.value.excursion == pytest.approx(1.28)
    torch.testing.assert_close(stop.value.positions, free[:k], rtol=0, atol=0)
    broken = window.clone()
    broken[3, -1, 1] = float("nan")
    with pytest.raises(RolloutDiverged, match="inf outside") as stop:
        rollout(model, broken, 12)  # no limit given: only a non-finite position stops it
    assert stop.value.step == 0 and stop.value.positions.shape == (0, 20, 2)
    assert runaway_excursion(model) == 10.0  # 10 box lengths
    truth = torch.cat([window.transpose(0, 1), free.clone()])  # [C + 12, n, 2]
    scores = rollout_errors(model, truth, torch.zeros(20, dtype=torch.long))
    assert scores["diverged_at_step"] == 10 and scores["rollout_mse"] == math.inf  # 0.01 * 2^10 > 10


def test_parts_are_chosen_by_name() -> None:
    """``walls`` and ``decoder`` pick modules from :data:`WALLS` / :data:`DECODERS`; unknown names,
    a damping without wall nodes and bad lengths are refused in one line."""
    for name, cls in WALLS.items():
        model = small_gns(walls=name)
        assert type(model.walls) is cls and model(graph(random_window(10))).shape == (10, 2)
        assert model.type_embedding.num_embeddings == 2 + cls.n_types
    for name, cls in DECODERS.items():
        assert type(small_gns(decoder=name).decoder) is cls
    assert small_gns().damping is None and isinstance(
        small_gns(walls="nodes", wall_damping_range=0.1).damping, WallDamping
    )
    for kw, match in (
        ({"walls": "particles"}, "walls must be one of"),
        ({"decoder": "edge"}, "decoder must be one of"),
        ({"wall_damping_range": 0.1}, 'walls="nodes"'),
        ({"walls": "nodes", "wall_damping_range": 0.0}, "length > 0"),
        ({"wall_reach": 0.0}, "wall_reach"),
        ({"frame_dt": -1.0}, "frame_dt"),
    ):
        with pytest.raises(ValueError, match=match):
            small_gns(**kw)


def test_rollout_refuses_bad_particle_types() -> None:
    """A particle-type array of the wrong length, or a type the model does not know, is refused
    before the first step with one line naming the problem."""
    model = small_gns()  # two particle types
    window = random_window(10)
    with pytest.raises(ValueError, match="one type per particle"):
        rollout(model, window, 2, particle_type=torch.zeros(9, dtype=torch.long))
    with pytest.raises(ValueError, match=r"model knows 0\.\.1"):
        rollout(model, window, 2, particle_type=torch.full((10,), 2, dtype=torch.long))
    assert rollout(model, window, 2, particle_type=torch.ones(10, dtype=torch.long)).shape == (2, 10, 2)


def test_wall_nodes_reach_the_nearest_point_on_each_wall() -> None:
    """``walls="nodes"``: one edge per wall within ``wall_reach``, its displacement pointing to the
    particle's nearest point on the wall (in units of R) and its signed distance, negative behind
    the wall, where the displacement points back into the box; both linear across the wall."""
    model = small_gns(walls="nodes", wall_reach=0.3)  # R = 0.15, reach 2 R
    pos = torch.tensor(
        [[0.5, 0.5], [0.1, 0.5], [0.05, 0.98], [0.5, 0.03], [0.5, -0.03], [1.06, 0.5]], dtype=torch.float64
    )
    receiver, wall, disp, distance = model.walls.edges(pos)
    got = {
        (int(r), int(w)): (d.tolist(), float(s))
        for r, w, d, s in zip(receiver, wall, disp, distance, strict=True)
    }
    expected = {  # walls: 0 left, 1 floor, 2 right, 3 lid
        (1, 0): ([-0.1 / 0.15, 0.0], 0.1 / 0.15),
        (2, 0): ([-0.05 / 0.15, 0.0], 0.05 / 0.15),
        (2, 3): ([0.0, 0.02 / 0.15], 0.02 / 0.15),
        (3, 1): ([0.0, -0.2], 0.2),
        (4, 1): ([0.0, 0.2], -0.2),  # behind the floor: back up to it
        (5, 2): ([-0.4, 0.0], -0.4),  # behind the right wall: back left
    }
    assert got.keys() == expected.keys()
    for key, (d, s) in expected.items():
        torch.testing.assert_close(
            torch.tensor(got[key][0], dtype=torch.float64),
            torch.tensor(d, dtype=torch.float64),
            rtol=0,
            atol=1e-12,
        )
        assert got[key][1] == pytest.approx(s, abs=1e-12)
    # the wall edges' features fed to the network: [disp, signed distance], from nodes n .. n + 3
    window = pos[:, None, :].expand(-1, model.window, -1).contiguous()
    edge_index = model.build_edges(window[:, -1])
    node_in, edge_in = model.features(window, torch.zeros(6, dtype=torch.long), edge_index)
    nodes, edges, index = model.walls.add_nodes(
        window[:, -1], node_in, edge_in, edge_index, model._static_node_input
    )
    assert nodes.shape[0] == 6 + 4 and bool((index[1, edge_index.shape[1] :] >= 6).all())
    torch.testing.assert_close(edges[edge_index.shape[1] :], torch.cat([disp, distance[:, None]], -1))
    near = small_gns(walls="nodes")  # default reach R: the particle 0.1 from the left wall only
    assert near.walls.edges(pos[1:2])[0].tolist() == [0]
    assert near.walls.edges(torch.tensor([[0.2, 0.5]], dtype=torch.float64))[0].numel() == 0


def test_a_flat_wall_acts_the_same_all_along_it() -> None:
    """With wall nodes (and the wall features out of reach) sliding water along the floor changes
    nothing, as for a real flat floor."""
    window = 0.1 * random_window(30)  # 0.1 wide, touching the floor
    window[..., 0] += 0.3
    slid = window + torch.tensor([0.25, 0.0], dtype=torch.float64)
    assert float(window[..., 0].min()) > 0.15 + 1e-3 and float(slid[..., 0].max()) < 0.85 - 1e-3
    model = _pairwise(walls="nodes", wall_cutoff=0.01)  # side walls out of every feature's reach
    with torch.no_grad():
        a, b = model(graph(window)), model(graph(slid))
    assert float((a - model.acc_mean).abs().max()) > 1e-6  # the floor acts
    torch.testing.assert_close(a, b, rtol=0, atol=1e-15)


def _damped(**kw) -> tuple[GNS, GNS]:
    """A model with wall damping (gate at 1) and the same model without it."""
    damped = small_gns(walls="nodes", wall_damping_range=0.04, **kw)
    plain = small_gns(walls="nodes", **kw)
    missing, unexpected = plain.load_state_dict(damped.state_dict(), strict=False)
    assert not missing and unexpected and all(k.startswith("damping.") for k in unexpected)
    with torch.no_grad():
        damped.damping.gate[-1].bias.fill_(50.0)  # g = 1
    return damped, plain


def test_wall_damping_removes_the_outward_velocity_of_particles_arriving_at_a_wall() -> None:
    """With the gate at 1 a particle loses ``e = clip(1 - d'/range, 0, 1)`` of its outward velocity
    ``u = v + a'`` (after the decoder's acceleration ``a'``), ``d'`` the distance of its arrival
    point ``x_t + u`` inside the wall: all of it on or behind the wall, none from ``range`` on."""
    damped, plain = _damped(wall_reach=0.2)
    r = damped.damping.range
    # particles 0.08 apart in x (no side wall in reach), falling at 0.05 per frame towards the floor
    # from heights that put their arrival behind, on, and inside the floor
    height = torch.tensor([0.03, 0.05, 0.07, 0.09, 0.11, 0.15], dtype=torch.float64)
    n = height.shape[0]
    t = torch.arange(6, dtype=torch.float64) - 5.0  # the last frame at t = 0
    window = torch.zeros(n, 6, 2, dtype=torch.float64)
    window[..., 0] = 0.3 + 0.08 * torch.arange(n, dtype=torch.float64).unsqueeze(1)
    window[..., 1] = height.unsqueeze(1) - 0.05 * t
    with torch.no_grad():
        a_plain, a_damped = plain(graph(window)), damped(graph(window))
    u = window[:, -1] - window[:, -2] + a_plain  # [n, 2]
    weight = (1.0 - (window[:, -1, 1] + u[:, 1]) / r).clamp(0.0, 1.0)
    assert (
        float(weight.min()) == 0.0
        and float(weight.max()) == 1.0
        and bool(((weight > 0) & (weight < 1)).any())
    )
    removed = a_damped - a_plain
    torch.testing.assert_close(removed[:, 0], torch.zeros(n, dtype=torch.float64), rtol=0, atol=0)
    torch.testing.assert_close(removed[:, 1], weight * (-u[:, 1]).clamp_min(0.0), rtol=0, atol=1e-15)


def test_wall_damping_never_pushes_out_and_its_gate_learns() -> None:
    """Particles moving into the box, or far from the walls, are untouched; in a corner each wall
    removes its own component; the gate's parameters get gradients."""
    damped, plain = _damped(wall_reach=0.3)
    last = torch.tensor([[0.5, 0.005], [0.35, 0.12], [0.5, 0.5], [0.005, 0.005]], dtype=torch.float64)
    velocity = torch.tensor([[0.002, -0.01], [0.0, 0.01], [0.0, -0.02], [-0.01, -0.02]], dtype=torch.float64)
    t = torch.arange(6, dtype=torch.float64).view(1, 6, 1) - 5
    window = last[:, None, :] + velocity[:, None, :] * t  # [n, 6, 2], constant velocity
    with torch.no_grad():
        a_plain, a_damped = plain(graph(window)), damped(graph(window))
    removed = a_damped - a_plain
    assert float(removed[1:3].abs().max()) == 0  # moving in, arriving far from the floor; out of reach
    after = velocity + a_damped  # particles 0 and 3 arrive behind the floor (and the left wall)
    assert float(after[0, 1]) == pytest.approx(0.0, abs=1e-15) and float(removed[0, 0]) == 0.0
    torch.testing.assert_close(after[3], torch.zeros(2, dtype=torch.float64), rtol=0, atol=1e-15)
    damped.damping.gate[-1].bias.data.fill_(0.0)
    damped(graph(window)).sum().backward()
    assert float(damped.damping.gate[-1].bias.grad.abs()) > 0


def test_pairwise_decoder_is_the_antisymmetric_sum_of_its_mlp() -> None:
    """The factorised first layer equals phi on the concatenation, f_ij = phi(i, j) - phi(j, i)."""
    model = _pairwise(walls="none")
    window = random_window(30)
    g = graph(window)
    edge_index = model.build_edges(window[:, -1])
    node_in, edge_in = model.features(window, g[K.Z], edge_index)
    node, edge = model.node_encoder(node_in), model.edge_encoder(edge_in)
    for block in model.processor:
        node, edge = block(node, edge, edge_index)
    i, j = edge_index
    d, r = edge_in[:, :2], edge_in[:, 2:]
    f = model.decoder.mlp(torch.cat([node[i], node[j], d, r], -1)) - model.decoder.mlp(
        torch.cat([node[j], node[i], -d, r], -1)
    )
    expected = torch.zeros(30, 2, dtype=torch.float64).index_add_(0, i, f) * model.acc_std + model.acc_mean
    assert edge_index.shape[1] > 60
    torch.testing.assert_close(model(g), expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("walls", ["none", "features", "nodes"])
def test_pairwise_decoder_conserves_momentum_away_from_walls(walls: str) -> None:
    """Pair terms cancel (Newton's third law): the accelerations of particles that touch no wall
    sum to n times the body acceleration, and a lone particle falls freely. Wall nodes
    within reach add a net force (the floor holds water up)."""
    model = _pairwise(walls=walls)
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
    if walls == "nodes":  # near the floor the walls push: momentum is not conserved
        floor = window.clone()
        floor[..., 1] -= float(window[:, -1, 1].min()) - 0.01
        with torch.no_grad():
            assert float((model(graph(floor)).sum(0) - 40 * model.acc_mean).abs().max()) > 1e-6


def test_pairwise_decoder_symmetries_and_arguments() -> None:
    model = _pairwise(walls="none")
    inputs, kinds = _inputs()
    report = check_particle_symmetries(
        _as_3d(model), inputs, kinds, "vector", ("translation", "permutation"), group_key=None
    )
    assert max(report.values()) <= 1e-10, report
    assert _pairwise().hparams["decoder"] == "pairwise"
    # without a body acceleration the pairwise decoder has none: the uniform part is zero
    plain = small_gns(decoder="pairwise")
    assert plain.body_acceleration == (0.0, 0.0) and plain.hparams["body_acceleration"] is None
