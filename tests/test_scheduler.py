"""GNSScheduler: the agent as a drop-in LRScheduler in a plain training loop."""
from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn

from gnsched.agent import GNSAgent
from gnsched.config import AgentConfig
from gnsched.errors import GNSError
from gnsched.scheduler import GNSScheduler
from gnsched.tasks import mlp


@pytest.fixture(scope="module")
def agent():
    torch.manual_seed(3)
    a = GNSAgent(AgentConfig(hidden=16, head_hidden=8, type_dim=4))
    with torch.no_grad():  # a visibly state-dependent, non-zero policy
        a.actor[-1].weight.mul_(100)
        a.actor[-1].bias.fill_(0.3)
    return a


def _setup(agent, **kw):
    torch.manual_seed(0)
    model = mlp(64, hidden=32)
    opt = torch.optim.Adam([{"params": model[0].parameters(), "lr": 1e-3},
                            {"params": list(model[2].parameters()) + list(model[4].parameters()), "lr": 2.5e-4,
                             "weight_decay": 0.0}])
    kw.setdefault("interval", 5)
    kw.setdefault("total_steps", 600)
    return model, opt, GNSScheduler(opt, model, agent, **kw)


def _batch(g, digits_task):
    idx = torch.randint(0, len(digits_task.splits.train_y), (32,), generator=g)
    return digits_task.splits.train_x[idx], digits_task.splits.train_y[idx]


def _train(model, opt, sched, steps, g, digits_task, lrs):
    for _ in range(steps):
        x, y = _batch(g, digits_task)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step(loss)
        lrs.append(sched.get_last_lr())


def test_state_dict_round_trip_is_bit_exact(agent, digits_task):
    model, opt, sched = _setup(agent, deterministic=False, seed=7)
    g, lrs_a = torch.Generator().manual_seed(1), []
    _train(model, opt, sched, 60, g, digits_task, lrs_a)
    ref = [p.detach().clone() for p in model.parameters()]

    model, opt, sched = _setup(agent, deterministic=False, seed=7)
    g, lrs_b = torch.Generator().manual_seed(1), []
    _train(model, opt, sched, 27, g, digits_task, lrs_b)  # stop mid-window
    ckpt = copy.deepcopy({"m": model.state_dict(), "o": opt.state_dict(), "s": sched.state_dict()})
    model2, opt2, sched2 = _setup(agent, deterministic=False, seed=99, example_input=digits_task.example_input())
    model2.load_state_dict(ckpt["m"])
    opt2.load_state_dict(ckpt["o"])
    sched2.load_state_dict(ckpt["s"])
    _train(model2, opt2, sched2, 33, g, digits_task, lrs_b)
    assert lrs_a == lrs_b
    assert len({tuple(l) for l in lrs_a}) > 5  # the schedule really moved
    assert all(torch.equal(p, q) for p, q in zip(ref, model2.parameters()))


def test_group_ratios_preserved_over_100_decisions(agent, digits_task):
    model, opt, sched = _setup(agent, interval=1, total_steps=100)
    lrs = []
    _train(model, opt, sched, 100, torch.Generator().manual_seed(2), digits_task, lrs)
    assert sched.decisions == 100
    assert lrs[-1][0] != pytest.approx(1e-3)
    for a, b in lrs:
        assert a / b == pytest.approx(4.0, rel=1e-9)


def test_accumulation_counts_optimizer_steps_only(agent, digits_task):
    model, opt, sched = _setup(agent, interval=3)
    g = torch.Generator().manual_seed(0)
    for i in range(24):  # 4 micro-batches per optimizer step -> 6 optimizer steps
        x, y = _batch(g, digits_task)
        (nn.functional.cross_entropy(model(x), y) / 4).backward()
        if i % 4 == 3:
            opt.step()
            opt.zero_grad()
        sched.step()
    assert sched.optimizer_steps == 6 and sched.last_epoch == 6 and sched.decisions == 2


def test_grad_scaler_skipped_step_is_not_counted(agent, digits_task):
    model, opt, sched = _setup(agent, interval=2)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 8)
    g = torch.Generator().manual_seed(0)
    for i in range(4):
        x, y = _batch(g, digits_task)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        scaler.scale(loss).backward()
        if i == 1:  # an overflowing step: GradScaler skips optimizer.step()
            model[0].weight.grad.fill_(float("inf"))
        scaler.step(opt)
        scaler.update()
        sched.step(loss)
    assert sched.optimizer_steps == 3 and sched.last_epoch == 3 and sched.decisions == 1


def test_load_state_dict_checks_agent_and_restores_lrs(agent, digits_task):
    model, opt, sched = _setup(agent)
    _train(model, opt, sched, 12, torch.Generator().manual_seed(0), digits_task, [])
    state = sched.state_dict()
    other = GNSAgent(AgentConfig(hidden=16, head_hidden=8, type_dim=4))
    _, opt2, sched2 = _setup(other)
    with pytest.raises(GNSError, match="made with agent"):
        sched2.load_state_dict(state)
    model3, opt3, sched3 = _setup(agent)
    for group in opt3.param_groups:
        group["lr"] = 0.5  # e.g. an optimizer checkpoint from another run
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        sched3.load_state_dict(state)
    assert any("differ" in str(x.message) for x in w)
    assert [g["lr"] for g in opt3.param_groups] == state["lrs"]


def test_bad_arguments(agent):
    model = mlp(64, hidden=8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(GNSError, match="interval"):
        GNSScheduler(opt, model, agent, interval=0, total_steps=10)
    with pytest.raises(GNSError, match="total_steps"):
        GNSScheduler(opt, model, agent, interval=2)
    sched = GNSScheduler(opt, model, agent, interval=1, total_steps=10)
    model(torch.zeros(2, 64)).sum().backward()
    opt.step()
    sched.step(1.0)  # the pre-hook saw the forward call above: the graph is built from it
    assert sched.graph.num_nodes == 3 and sched.decisions == 1


def test_tensor_learning_rates(agent, digits_task):
    torch.manual_seed(0)
    model = mlp(64, hidden=32)
    opt = torch.optim.Adam(model.parameters(), lr=torch.tensor(1e-3), foreach=False)
    sched = GNSScheduler(opt, model, agent, interval=2, total_steps=20)
    lrs = []
    _train(model, opt, sched, 6, torch.Generator().manual_seed(0), digits_task, lrs)
    assert isinstance(opt.param_groups[0]["lr"], torch.Tensor)
    assert sched.decisions == 3 and lrs[-1][0] != pytest.approx(1e-3)
    assert float(opt.param_groups[0]["lr"]) == pytest.approx(lrs[-1][0])


def test_shipped_agent_loads_by_name_and_trains_one_epoch(digits_task):
    from gnsched.agent import pretrained_names

    assert "fashion-mnist" in pretrained_names()
    agent = GNSAgent.load("fashion-mnist")
    assert agent.recipe["task"] == "fashion-mnist-mlp" and agent.recipe["episodes"] == 30
    torch.manual_seed(0)
    model = mlp(64)  # zero-shot on another MLP and data set
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    steps = digits_task.steps_per_epoch()
    sched = GNSScheduler.pretrained("fashion-mnist", opt, model, total_steps=steps, interval=4)
    lrs = []
    _train(model, opt, sched, steps, torch.Generator().manual_seed(0), digits_task, lrs)
    assert sched.decisions == steps // 4 and all(0 < l[0] < 1 for l in lrs)
    assert digits_task.evaluate(model, "val") > 0.5  # one epoch with the shipped schedule learns
    with pytest.raises(GNSError, match="unknown pretrained agent"):
        GNSScheduler.pretrained("imagenet", opt, model, total_steps=10)


def test_tensorboard_logging(agent, digits_task, tmp_path):
    pytest.importorskip("tensorboard")
    model, opt, sched = _setup(agent, interval=2, writer=tmp_path / "tb")
    _train(model, opt, sched, 6, torch.Generator().manual_seed(0), digits_task, [])
    sched.writer.flush()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"gnsched/lr", "gnsched/action", "gnsched/value", "gnsched/train_loss"} <= tags
    lrs = [e.value for e in acc.Scalars("gnsched/lr")]
    assert [e.step for e in acc.Scalars("gnsched/lr")] == [2, 4, 6]
    assert lrs[-1] == pytest.approx(opt.param_groups[0]["lr"], rel=1e-6)


def _loop(model, opt, sched, steps, g, digits_task, zero_first=False):
    lrs = []
    for _ in range(steps):
        x, y = _batch(g, digits_task)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        if zero_first:  # a loop that clears gradients before the scheduler step
            opt.zero_grad()
            sched.step(loss)
        else:
            sched.step(loss)
            opt.zero_grad()
        lrs.append(sched.get_last_lr())
    return lrs


def test_gradients_are_read_before_the_step_whatever_the_loop_order(agent, digits_task):
    runs = []
    for zero_first in (False, True):
        model, opt, sched = _setup(agent)
        runs.append(_loop(model, opt, sched, 30, torch.Generator().manual_seed(0), digits_task, zero_first))
    assert runs[0] == runs[1]


def test_whole_scheduler_pickles_and_keeps_scheduling(agent, digits_task, tmp_path):
    model, opt, sched = _setup(agent)
    g = torch.Generator().manual_seed(0)
    _loop(model, opt, sched, 12, g, digits_task)
    torch.save({"m": model, "o": opt, "s": sched}, tmp_path / "all.pt")
    ref = _loop(model, opt, sched, 13, torch.Generator().manual_seed(5), digits_task)
    back = torch.load(tmp_path / "all.pt", weights_only=False)
    got = _loop(back["m"], back["o"], back["s"], 13, torch.Generator().manual_seed(5), digits_task)
    assert back["s"].last_epoch == sched.last_epoch == 25 and back["s"].decisions == sched.decisions == 5
    assert got == ref
    copy.deepcopy(sched).close()  # deepcopy works too; closing removes the copy's hooks only
    _loop(model, opt, sched, 5, g, digits_task)
    assert sched.last_epoch == 30


def test_close_detaches_and_total_steps_of_the_constructor_win(agent, digits_task):
    model, opt, sched = _setup(agent, total_steps=100)
    _loop(model, opt, sched, 5, torch.Generator().manual_seed(0), digits_task)
    state = sched.state_dict()
    sched.close()
    _loop(model, opt, _setup.__globals__["GNSScheduler"](opt, model, agent, interval=5, total_steps=100),
          1, torch.Generator().manual_seed(0), digits_task)
    assert sched.optimizer_steps == 5  # the closed scheduler no longer counts
    model2, opt2, sched2 = _setup(agent, total_steps=999, example_input=digits_task.example_input())
    with pytest.warns(UserWarning, match="keeping 999"):
        sched2.load_state_dict(state)
    assert sched2.total_steps == 999


def test_compiled_model_and_dotted_agent_names(agent, tmp_path):
    model = mlp(64, hidden=8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = GNSScheduler(opt, torch.compile(model), agent, interval=1, total_steps=10)
    assert sched.model is model
    path = agent.save(tmp_path / "agent_v1.2")
    assert path.name == "agent_v1.2.safetensors" and (tmp_path / "agent_v1.2.json").exists()
    assert torch.equal(GNSAgent.load(tmp_path / "agent_v1.2").actor[-1].bias, agent.actor[-1].bias)


def test_warns_when_the_run_is_shorter_than_one_interval(agent):
    model = mlp(64, hidden=8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.warns(UserWarning, match="no decision will be made"):
        GNSScheduler(opt, model, agent, interval=50, total_steps=16)


def _bn_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10))
    return model, torch.optim.SGD(model.parameters(), lr=0.05)


def _bn_train(model, opt, sched, steps, g, digits_task):
    for _ in range(steps):
        x, y = _batch(g, digits_task)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step(loss)


def test_graph_extraction_leaves_batch_norm_statistics_alone(digits_task):
    """The graph is taken with one extra forward pass; it must not move the model's buffers
    (BatchNorm running statistics): with a policy that keeps the lr, training with the
    scheduler equals training without it, buffers included."""
    keep = GNSAgent(AgentConfig(hidden=16, head_hidden=8, type_dim=4))
    with torch.no_grad():
        keep.actor[-1].weight.zero_()  # mu = 0.1 · tanh(0) = 0: the lr never changes
    states = []
    for with_sched in (False, True):
        model, opt = _bn_model()
        sched = GNSScheduler(opt, model, keep, interval=3, total_steps=12) if with_sched else None
        _bn_train(model, opt, sched, 12, torch.Generator().manual_seed(4), digits_task)
        states.append(model.state_dict())
    assert sched.decisions == 4
    for k in states[0]:
        assert torch.equal(states[0][k], states[1][k]), k


def test_state_dict_round_trip_with_batch_norm(agent, digits_task):
    model, opt = _bn_model()
    sched = GNSScheduler(opt, model, agent, interval=5, total_steps=40)
    _bn_train(model, opt, sched, 40, torch.Generator().manual_seed(1), digits_task)
    ref = model.state_dict()

    model, opt = _bn_model()
    sched = GNSScheduler(opt, model, agent, interval=5, total_steps=40)
    g = torch.Generator().manual_seed(1)
    _bn_train(model, opt, sched, 17, g, digits_task)
    ckpt = copy.deepcopy({"m": model.state_dict(), "o": opt.state_dict(), "s": sched.state_dict()})
    model2, opt2 = _bn_model()
    sched2 = GNSScheduler(opt2, model2, agent, interval=5, total_steps=40)
    model2.load_state_dict(ckpt["m"])
    opt2.load_state_dict(ckpt["o"])
    sched2.load_state_dict(ckpt["s"])
    _bn_train(model2, opt2, sched2, 23, g, digits_task)
    got = model2.state_dict()
    for k in ref:
        assert torch.equal(ref[k], got[k]), k


def test_first_group_with_zero_lr_is_a_clear_error(agent):
    model = mlp(64, hidden=8)
    opt = torch.optim.SGD([{"params": model[0].parameters(), "lr": 0.0},
                           {"params": list(model[2].parameters()) + list(model[4].parameters())}], lr=0.1)
    with pytest.raises(GNSError, match="first param group"):
        GNSScheduler(opt, model, agent, interval=1, total_steps=10)
    opt.param_groups[0]["lr"] = 0.1
    sched = GNSScheduler(opt, model, agent, interval=1, total_steps=10)
    opt.param_groups[0]["lr"] = 0.0  # e.g. set to 0 by other code during training
    model(torch.zeros(2, 64)).sum().backward()
    opt.step()
    with pytest.raises(GNSError, match="first param group"):
        sched.step(1.0)


def test_agent_given_as_a_file_or_name(agent, tmp_path):
    model = mlp(64, hidden=8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    agent.save(tmp_path / "a.safetensors")
    sched = GNSScheduler(opt, model, tmp_path / "a.safetensors", interval=1, total_steps=10)
    assert sched.fingerprint == GNSScheduler(opt, model, agent, interval=1, total_steps=10).fingerprint
    assert GNSScheduler(opt, model, "fashion-mnist", interval=1, total_steps=10).agent.recipe["episodes"] == 30
    with pytest.raises(GNSError, match="does not exist"):
        GNSScheduler(opt, model, str(tmp_path / "missing"), interval=1, total_steps=10)
    with pytest.raises(GNSError, match="agent must be a GNSAgent"):
        GNSScheduler(opt, model, {"not": "an agent"}, interval=1, total_steps=10)


def test_closure_steps_read_the_gradients_of_that_step(agent, digits_task):
    """``optimizer.step(closure)`` (Lightning, LBFGS-style loops) computes the gradients
    inside the step: the schedule must equal that of a plain loop on the same batches."""
    runs = []
    for use_closure in (False, True):
        model, opt, sched = _setup(agent)
        g = torch.Generator().manual_seed(0)
        lrs = []
        for _ in range(30):
            x, y = _batch(g, digits_task)

            def closure():
                opt.zero_grad()
                loss = nn.functional.cross_entropy(model(x), y)
                loss.backward()
                return loss

            if use_closure:
                loss = opt.step(closure=closure)
            else:
                loss = closure()
                opt.step()
            sched.step(loss)
            lrs.append(sched.get_last_lr())
        runs.append(lrs)
    assert sched.decisions == 6
    assert runs[0] == runs[1]


def test_a_validation_pass_before_training_is_not_taken_as_the_graph_input(agent, digits_task):
    """Lightning's sanity check (and many loops) run the model under inference_mode or no_grad
    before the first training step; the graph must come from a forward pass autograd can follow."""
    model, opt, sched = _setup(agent)
    x, _ = _batch(torch.Generator().manual_seed(0), digits_task)
    with torch.inference_mode():
        model(x.clone())  # as a batch moved to the device inside the validation loop
    with torch.no_grad():
        model(x)
    _train(model, opt, sched, 10, torch.Generator().manual_seed(0), digits_task, [])
    assert sched.decisions == 2 and sched.graph.num_nodes == 3


def test_warns_when_the_lr_lies_outside_the_clamps(agent):
    model = mlp(64, hidden=8)
    opt = torch.optim.SGD(model.parameters(), lr=2.0)
    with pytest.warns(UserWarning, match=r"outside \[lr_min, lr_max\]"):
        GNSScheduler(opt, model, agent, interval=1, total_steps=10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        GNSScheduler(opt, model, agent, interval=1, total_steps=10, lr_max=4.0)


def test_tensor_lr_shared_by_param_groups_is_scaled_once(agent, digits_task):
    """A tensor ``lr`` given as the optimizer's default is one tensor object shared by every
    group that does not set its own: one decision must scale it by (1 + a) once."""
    torch.manual_seed(0)
    model = mlp(64, hidden=32)
    opt = torch.optim.Adam([{"params": model[0].parameters()}, {"params": model[2].parameters()},
                            {"params": model[4].parameters()}], lr=torch.tensor(1e-3), foreach=False)
    assert opt.param_groups[0]["lr"] is opt.param_groups[1]["lr"]
    sched = GNSScheduler(opt, model, agent, interval=2, total_steps=20)
    expected = 1e-3
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        _train(model, opt, sched, 2, g, digits_task, [])
        expected *= 1 + sched.last_action
    assert sched.decisions == 3 and sched.last_action != 0
    assert float(opt.param_groups[0]["lr"]) == pytest.approx(expected, rel=1e-5)


def test_shipped_agent_trains_the_fashion_mnist_mlp_one_epoch(fashion_dir):
    """The shipped agent by name on the model it was trained for: one epoch of the
    Fashion-MNIST MLP (391 steps, K = 50: 7 decisions), a plain loop, real data."""
    from gnsched.tasks import get_task

    task = get_task("fashion-mnist-mlp", fashion_dir)
    torch.manual_seed(0)
    model = task.make_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    steps = task.steps_per_epoch()
    sched = GNSScheduler.pretrained("fashion-mnist", opt, model, total_steps=steps)
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(task.num_train(), generator=g)
    for i in range(steps):
        x, y = task.batch(order[i * task.batch_size:(i + 1) * task.batch_size])
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step(loss)
    assert steps == 391 and sched.decisions == steps // 50
    assert sched.get_last_lr()[0] != pytest.approx(1e-3)  # the agent did move the lr
    assert task.evaluate(model, "val") > 0.8  # one epoch of a sensible schedule: ~84 %
