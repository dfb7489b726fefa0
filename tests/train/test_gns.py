"""GNS training (physnet.train.gns): the task's loss, pushforward, wall excursions, config and runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import physnet
from physnet.data import keys as K
from physnet.data.trajectories import WindowDataset, collate_windows, load_trajectories
from physnet.models.gns import GNS
from physnet.models.simulator import rollout
from physnet.sim.frames import euler_step
from physnet.train.gns import GNSTask, build_from_data, check_body_acceleration, load_gns_config, train_gns

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "data" / "mpm_water" / "water_fixture.npz"
CONFIG = ROOT / "examples" / "configs" / "gns_water.yaml"
# the config's body acceleration is gravity for 4 ms frames; the fixture's frames are 2 ms apart
FIXTURE_GRAVITY = "model.body_acceleration=[0.0, -3.92e-5]"


def small_gns(**kw) -> GNS:
    torch.manual_seed(0)
    args = dict(dim=2, radius=0.15, latent_size=16, hidden_size=16, n_message_passing=3, n_particle_types=2)
    args.update(kw)
    return physnet.models.build_simulator("gns", **args).double().eval()


def _pushforward_task(unroll: int = 3, **kw):
    data = load_trajectories(FIXTURE, torch.float64)
    model = small_gns(bounds=data.bounds.tolist(), radius=0.015, n_particle_types=1)
    model.fit_statistics(data.positions)
    args = dict(noise_std=0.0, pushforward_unroll=unroll, pushforward_prob=1.0)
    args.update(kw)
    task = GNSTask(model, **args)
    windows = WindowDataset(data, 6, future=unroll)
    return data, task, windows, collate_windows


def test_one_training_step_reduces_the_loss_on_a_fixed_batch() -> None:
    """The task's loss, gradients and optimiser are wired: 30 steps on one batch lower the loss by > 25 %."""
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


def test_pushforward_target_lands_on_the_true_next_position() -> None:
    """The Euler step from the pushed-forward window with the target lands on the true next position."""
    _, task, windows, collate = _pushforward_task(unroll=2)
    batch = collate([windows[10], windows[200]])
    torch.manual_seed(0)
    inputs, acc, error = task.training_example(batch, unroll=2)
    torch.manual_seed(0)
    _, history, next_pos = task.push_forward(batch, batch[K.POS_HISTORY], 2)
    torch.testing.assert_close(error, inputs - history, rtol=0, atol=0)
    step = euler_step(inputs, acc)
    torch.testing.assert_close(step, next_pos, rtol=0, atol=1e-15)
    assert float((inputs - history).abs().max()) > 1e-6  # the model did drift
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
    model = small_gns(bounds=[[0.0, 1.0], [0.0, 1.0]])
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


def test_unroll_sampling_schedule() -> None:
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
    ):
        with pytest.raises(ValueError, match=match):
            GNSTask(model, **bad)


def test_pushforward_training_runs_from_the_config(tmp_path: Path) -> None:
    """``task.pushforward_*`` reach the task: 4 steps with pushforward from step 2 log the unroll
    lengths (0, 0 then 1..2) and the input's error against the truth."""
    import csv

    cfg = load_gns_config(
        CONFIG,
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
        ],
    )
    run = train_gns(cfg)
    with open(run / "logs" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/unroll")]
    unrolls = [float(r["train/unroll"]) for r in rows]
    assert len(unrolls) == 4 and unrolls[:2] == [0.0, 0.0] and all(u in (1.0, 2.0) for u in unrolls[2:])
    errors = [float(r["train/input_error"]) for r in rows]
    assert all(math.isfinite(e) and e > 0 for e in errors)


@pytest.mark.parametrize("ema_decay", [0.0, 0.5])
def test_validation_rollouts_select_the_saved_model(
    tmp_path: Path, ema_decay: float, capsys: pytest.CaptureFixture[str]
) -> None:
    """With ``data.val_rollouts`` the saved ``gns.pt`` is the validated model (EMA weights if on)
    with the lowest validation rollout MSE: rolling it out again reproduces the logged best.
    Every validation prints its figures (progress of a long run)."""
    import csv

    from physnet.models.simulator import load_simulator

    fixture = str(FIXTURE)
    cfg = load_gns_config(
        CONFIG,
        [
            f"run_dir={tmp_path / 'run'}",
            f"data.train={fixture}",
            FIXTURE_GRAVITY,
            f"data.valid={fixture}",
            "data.test=",
            "data.val_stride=50",
            "data.val_rollouts=1",
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
    cfg = load_gns_config(
        None, [f"run_dir={tmp_path}", f"data.train={FIXTURE}", "data.val_rollouts=2", "trainer.max_steps=1"]
    )
    with pytest.raises(ValueError, match="data.valid"):
        train_gns(cfg)


def test_body_acceleration_must_match_the_free_fall_of_the_training_data() -> None:
    """Gravity in length / frame^2 depends on the frame step: the 4 ms config's value on the
    2 ms fixture is refused with the value the data show."""
    data = load_trajectories(FIXTURE)
    kw = {"latent_size": 8, "hidden_size": 8, "n_message_passing": 1}
    with pytest.raises(ValueError, match=r"free-fall frames .* accelerate at \[.*-3.92e-05\]"):
        check_body_acceleration(GNS(body_acceleration=[0.0, -1.568e-4], **kw), data)
    check_body_acceleration(GNS(body_acceleration=[0.0, -3.92e-5], **kw), data)
    check_body_acceleration(GNS(**kw), data)  # learnt: nothing to check
    with pytest.raises(ValueError, match="free-fall frames"):
        check_body_acceleration(GNS(decoder="pairwise", **kw), data)  # no body acceleration: zero


def test_the_model_records_the_frame_step_of_its_training_data() -> None:
    """``build_from_data`` takes box, type count and frame step from the data; a pairwise decoder
    without a body acceleration (zero) is refused where the data's free fall says otherwise."""
    data = load_trajectories(FIXTURE)
    cfg = load_gns_config(None, [f"data.train={FIXTURE}", "model.latent_size=8", "model.hidden_size=8"])
    model = build_from_data(cfg, data)
    assert model.frame_dt == data.frame_dt and model.hparams["frame_dt"] == data.frame_dt
    assert model.bounds.tolist() == data.bounds.tolist() and model.n_particle_types == 1
    cfg.model["decoder"] = "pairwise"
    with pytest.raises(ValueError, match=r"set model.body_acceleration=\[.*-3.92e-05\]"):
        build_from_data(cfg, data)


def test_removed_options_are_unknown_keys() -> None:
    """Options that did not help are gone from the config: naming one is an error that lists the keys."""
    for key in ("task.huber_delta=1", "task.wall_penalty=10", "data.acceleration_sampling=3"):
        with pytest.raises(ValueError, match="unknown key"):
            load_gns_config(None, [key])
    cfg = load_gns_config(None, ["model.wall_lookahead=true", f"data.train={FIXTURE}"])
    with pytest.raises(TypeError, match="unknown argument"):
        build_from_data(cfg, load_trajectories(FIXTURE))


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
    assert main(["gns-train", str(CONFIG), *overrides]) == 0
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


def test_rollout_of_a_checkpoint_from_before_the_refactor_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A ``gns.pt`` whose hparams name removed options is refused in one line that says why."""
    from physnet.cli import main

    old = tmp_path / "old.pt"
    torch.save(
        {"hparams": {"name": "gns", "wall_edges": True, "pairwise_decoder": True}, "state_dict": {}}, old
    )
    assert main(["gns-rollout", str(old), str(FIXTURE)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "older physnet whose GNS options are gone" in err[0] and "wall_edges" in err[0]


def test_physnet_train_runs_a_gns_config_resumes_it_and_guards_its_run_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``physnet train`` picks the GNS from the config (model.name: gns); ``--resume`` continues
    from last.ckpt to the new step limit and keeps the first part's log; a new run into the same
    directory is refused; ``gns-train`` is the same command."""
    import csv

    from physnet.cli import main

    run = tmp_path / "run"
    overrides = [
        f"run_dir={run}",
        f"data.train={FIXTURE}",
        FIXTURE_GRAVITY,
        "data.valid=",
        "data.test=",
        "data.val_rollouts=0",
        "model.latent_size=8",
        "model.hidden_size=8",
        "model.n_message_passing=1",
        "trainer.max_steps=2",
        "trainer.log_every_n_steps=1",
        "trainer.progress_bar=false",
        "trainer.checkpoint_every_n_steps=1",
    ]
    assert main(["train", str(CONFIG), *overrides]) == 0
    assert json.loads((run / "test_metrics.json").read_text())["optimizer_steps"] == 2
    assert main(["gns-train", str(CONFIG), *overrides]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["train", "--resume", str(run), "trainer.max_steps=4"]) == 0
    assert json.loads((run / "test_metrics.json").read_text())["optimizer_steps"] == 4
    with open(run / "logs" / "metrics_part000.csv") as f:
        first = [r for r in csv.DictReader(f) if r.get("train/loss")]
    with open(run / "logs" / "metrics.csv") as f:
        second = [r for r in csv.DictReader(f) if r.get("train/loss")]
    assert [int(r["step"]) for r in first] == [0, 1] and [int(r["step"]) for r in second] == [2, 3]
