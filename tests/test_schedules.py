"""Eq. 7 warmup + decay schedules and fixed-schedule runs."""
from __future__ import annotations

import math

import pytest
import torch

from gnsched.errors import GNSError
from gnsched.schedules import WarmupDecayLR, warmup_decay_factor
from gnsched.train import run_schedule

T, ETA1, ETA2, MU, BASE = 100, 0.1, 0.9, 0.1, 0.2
T_WARM, T_DECAY = ETA1 * T, ETA2 * T  # 10, 90


def eq7(t: float, shape: str, power: float = 1.0) -> float:
    """The paper's Eq. 7, written out independently of the implementation."""
    a_max, a_min = BASE, MU * BASE
    if t < T_WARM:
        return t / T_WARM * a_max
    if shape == "constant":
        return a_max
    if t >= T_DECAY:
        return a_min
    u = (t - T_WARM) / (T_DECAY - T_WARM)
    if shape == "polynomial":
        return (a_max - a_min) * (1 - u) ** power + a_min
    return 0.5 * (a_max - a_min) * (1 + math.cos(math.pi * u)) + a_min


def _lrs(shape: str, power: float = 1.0, groups=(BASE,)) -> list[list[float]]:
    """Learning rates in force at steps t = 0..T of a scheduled optimizer."""
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in groups]
    opt = torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, groups)])
    sched = WarmupDecayLR(opt, T, shape=shape, eta1=ETA1, eta2=ETA2, mu=MU, power=power)
    out = []
    for _ in range(T + 1):
        out.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize("shape, power", [("cosine", 1.0), ("polynomial", 1.0), ("polynomial", 2.0)])
def test_warmup_decay_closed_form(shape, power):
    lrs = [row[0] for row in _lrs(shape, power)]
    assert lrs[0] == 0.0
    assert lrs[5] == pytest.approx(0.1)                 # half-way through warmup: alpha_max / 2
    assert lrs[10] == pytest.approx(BASE)                # warmup end: alpha_max
    assert lrs[90] == pytest.approx(MU * BASE)           # decay end: alpha_min
    assert lrs[100] == pytest.approx(MU * BASE)
    mid = {"cosine": 0.11, "polynomial": 0.11 if power == 1.0 else 0.065}[shape]
    assert lrs[50] == pytest.approx(mid)                 # u = 1/2, hand-computed
    assert lrs[50] == pytest.approx(eq7(50, shape, power))
    for t in range(T + 1):
        assert lrs[t] == pytest.approx(eq7(t, shape, power), abs=1e-12), t


def test_cosine_quarter_point():
    # u = 1/4 at t = 30: 0.5 * 0.18 * (1 + cos(pi/4)) + 0.02
    assert _lrs("cosine")[30][0] == pytest.approx(0.5 * 0.18 * (1 + math.sqrt(0.5)) + 0.02)


def test_constant_with_warmup():
    lrs = [row[0] for row in _lrs("constant")]
    assert lrs[:11] == pytest.approx([t / 10 * BASE for t in range(11)])
    assert lrs[10:] == pytest.approx([BASE] * 91)


def test_param_group_ratios_kept():
    rows = _lrs("cosine", groups=(0.2, 0.05))
    for t in (5, 10, 50, 95):
        assert rows[t][1] == pytest.approx(rows[t][0] / 4)


def test_factor_defaults_are_plain_decay_to_zero():
    assert warmup_decay_factor(0, 10, "cosine") == 1.0
    assert warmup_decay_factor(5, 10, "cosine") == pytest.approx(0.5)
    assert warmup_decay_factor(10, 10, "cosine") == 0.0
    assert warmup_decay_factor(3, 10, "polynomial", power=2.0) == pytest.approx(0.49)


@pytest.mark.parametrize("kwargs, match", [
    (dict(shape="step"), "unknown schedule shape"), (dict(total_steps=0), "total_steps"),
    (dict(eta1=0.5, eta2=0.5), "eta1 < eta2"), (dict(eta2=1.5), "eta1 < eta2"), (dict(mu=2.0), "mu"),
])
def test_bad_schedule_arguments(kwargs, match):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    args = dict(total_steps=10, shape="cosine") | kwargs
    with pytest.raises(GNSError, match=match):
        WarmupDecayLR(opt, **args)


# ----------------------------------------------------------------------------- fixed-schedule runs
def test_run_schedule_cosine_window_lrs(digits_task):
    rec = run_schedule(digits_task, "cosine", 1e-3, seed=0, epochs=3)  # T = 54, K = 10
    assert rec.name == "cosine"
    assert rec.steps == [10, 20, 30, 40, 50, 54]
    expected = [1e-3 * 0.5 * (1 + math.cos(math.pi * s / 54)) for s in (0, 10, 20, 30, 40, 50)]
    assert rec.lrs == pytest.approx(expected)
    assert len(rec.train_losses) == 6 and all(math.isfinite(v) for v in rec.train_losses)
    assert rec.val[-1][0] == 54
    assert 0.0 <= rec.test_metric <= 1.0 and not rec.diverged


def test_run_schedule_constant_and_same_seed_same_result(digits_task):
    a = run_schedule(digits_task, "constant", 2e-3, seed=3, epochs=3)
    b = run_schedule(digits_task, "constant", 2e-3, seed=3, epochs=3)
    assert a.lrs == [2e-3] * 6
    assert a.train_losses == b.train_losses and a.test_metric == b.test_metric


@pytest.mark.parametrize("schedule, lr, match", [("step", 1e-3, "unknown schedule"),
                                                  ("cosine", -1.0, "positive finite"),
                                                  ("cosine", float("nan"), "positive finite")])
def test_run_schedule_bad_input(digits_task, schedule, lr, match):
    with pytest.raises(GNSError, match=match):
        run_schedule(digits_task, schedule, lr, seed=0, epochs=1)


# ----------------------------------------------------------------------------- WSD and Adam-HD
def test_wsd_phases():
    from gnsched.schedules import WarmupStableDecayLR

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.2)
    s = WarmupStableDecayLR(opt, total_steps=100, warmup=0.1, decay=0.3, mu=0.1)
    lrs = [s.get_last_lr()[0]]
    for _ in range(100):
        opt.step()
        s.step()
        lrs.append(s.get_last_lr()[0])
    assert lrs[0] == 0.0 and lrs[5] == pytest.approx(0.1) and lrs[10] == pytest.approx(0.2)
    assert lrs[30] == lrs[69] == pytest.approx(0.2)  # stable phase
    assert lrs[85] == pytest.approx(0.2 * (1 - 0.9 * 15 / 30))  # halfway down the linear decay
    assert lrs[100] == pytest.approx(0.02)


def test_adam_hd_two_steps_by_hand():
    from gnsched.hypergradient import AdamHD

    w = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt = AdamHD([w], lr=0.1, beta=0.01, eps=0.0)
    for _ in range(2):
        opt.zero_grad()
        (0.5 * w ** 2).sum().backward()
        opt.step()
    # step 1: g=1, no previous direction: h=0, alpha=0.1, m̂=v̂=1 → u=1, w=0.9
    # step 2: g=0.9, h=g·u=0.9, alpha=0.1+0.01·0.9=0.109
    m = 0.9 * 0.1 + 0.1 * 0.9
    v = 0.999 * 0.001 + 0.001 * 0.81
    u = (m / (1 - 0.9 ** 2)) / math.sqrt(v / (1 - 0.999 ** 2))
    assert opt.hypergradients == pytest.approx([0.0, 0.9])
    assert opt.param_groups[0]["lr"] == pytest.approx(0.109)
    assert float(w.detach()) == pytest.approx(0.9 - 0.109 * u, rel=1e-12)


def _quadratic_alpha(lr):
    from gnsched.hypergradient import AdamHD

    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(20) * 3)
    opt = AdamHD([w], lr=lr, beta=1e-3)
    for _ in range(30):
        opt.zero_grad()
        (0.5 * (w ** 2).sum()).backward()
        opt.step()
    return opt.param_groups[0]["lr"]


def test_adam_hd_moves_lr_the_right_way():
    assert _quadratic_alpha(1e-4) > 1e-4 * 2  # far too small: grows
    assert _quadratic_alpha(5.0) < 5.0  # overshooting the optimum every step: shrinks


def test_adam_hd_groups_keep_ratios_and_state_dict_round_trips():
    from gnsched.hypergradient import AdamHD

    torch.manual_seed(0)
    a, b = torch.nn.Parameter(torch.randn(5)), torch.nn.Parameter(torch.randn(5))
    opt = AdamHD([{"params": [a], "lr": 1e-2}, {"params": [b], "lr": 5e-3, "weight_decay": 0.1}],
                 beta=1e-4, decoupled=True)
    for _ in range(5):
        opt.zero_grad()
        ((a ** 2).sum() + (b ** 2).sum()).backward()
        opt.step()
    lr_a, lr_b = (g["lr"] for g in opt.param_groups)
    assert lr_a != pytest.approx(1e-2) and lr_a / lr_b == pytest.approx(2.0)
    opt2 = AdamHD([{"params": [a], "lr": 1e-2}, {"params": [b], "lr": 5e-3, "weight_decay": 0.1}],
                  beta=1e-4, decoupled=True)
    opt2.load_state_dict(opt.state_dict())
    assert [g["lr"] for g in opt2.param_groups] == [lr_a, lr_b]


def test_run_schedule_wsd_and_adam_hd(digits_task):
    from gnsched.train import run_schedule

    wsd = run_schedule(digits_task, "wsd", 1e-3, seed=0, epochs=5, log_interval=9)  # 90 steps, 10 windows
    assert wsd.lrs[:8] == [pytest.approx(1e-3)] * 8  # stable until 80 % of the run
    assert wsd.lrs[8] == pytest.approx(1e-3) and wsd.lrs[9] == pytest.approx(1e-3 * (1 - 9 / 18))
    hd = run_schedule(digits_task, "adam-hd", 1e-3, seed=0, epochs=5, log_interval=9)
    assert hd.lrs[0] == 1e-3 and hd.lrs[-1] != hd.lrs[0] and all(l > 0 for l in hd.lrs)
    assert 0.5 < hd.test_metric <= 1.0


@pytest.mark.parametrize("shape, power, mid", [("constant", 1.0, 1.0), ("cosine", 1.0, 0.5 * 0.99 + 0.01),
                                               ("polynomial", 1.0, 0.5 * 0.99 + 0.01),
                                               ("polynomial", 2.0, 0.25 * 0.99 + 0.01)])
def test_table5_point_without_warmup(shape, power, mid):
    # eta1 = 0, eta2 = 0.5, mu = 1e-2 (a Table 5 grid point), T = 200: decay ends at step 100
    f = [warmup_decay_factor(t, 200, shape, eta1=0.0, eta2=0.5, mu=1e-2, power=power) for t in (0, 50, 100, 199)]
    assert f[0] == 1.0                                  # no warmup: alpha_max from the first step
    assert f[1] == pytest.approx(mid)                   # mid-decay, u = 1/2
    end = 1.0 if shape == "constant" else 1e-2
    assert f[2] == pytest.approx(end) and f[3] == pytest.approx(end)  # alpha_min from eta2·T on
