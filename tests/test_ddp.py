"""GNSScheduler under torch.distributed: 2 processes (gloo, CPU) get the same learning
rate at every step, although each rank sees its own data and samples its own noise."""
from __future__ import annotations

import json
import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel as DDP

from gnsched.agent import GNSAgent
from gnsched.config import AgentConfig
from gnsched.scheduler import GNSScheduler
from gnsched.tasks import mlp

STEPS = 50


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(rank: int, distributed: bool | None) -> list[float]:
    torch.manual_seed(0)
    model = mlp(8, hidden=16, out_dim=3, layers=3)
    ddp = DDP(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.05)
    torch.manual_seed(1)
    agent = GNSAgent(AgentConfig(hidden=16, head_hidden=8, type_dim=4))
    with torch.no_grad():  # an actor whose mean depends visibly on the state
        agent.actor[-1].weight.mul_(100)
    # sampled actions with a different seed per rank: without sharing, the lrs would differ
    sched = GNSScheduler(opt, model, agent, interval=2, total_steps=STEPS, deterministic=False, seed=rank,
                         distributed=distributed)
    data = torch.Generator().manual_seed(100 + rank)  # each rank its own minibatches
    lrs = []
    for _ in range(STEPS):
        x, y = torch.randn(16, 8, generator=data), torch.randint(0, 3, (16,), generator=data)
        loss = torch.nn.functional.cross_entropy(ddp(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step(loss)
        lrs.append(opt.param_groups[0]["lr"])
    assert sched.decisions == STEPS // 2
    return lrs


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        result = {"shared": _train(rank, None), "local": _train(rank, False)}
    finally:
        dist.destroy_process_group()
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump(result, f)


def test_two_ranks_get_the_same_lr_at_every_step(tmp_path):
    # fork: the children share the already imported torch and gnsched (no re-import)
    mp.start_processes(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True, start_method="fork")
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert len(r0["shared"]) == STEPS
    assert r0["shared"] == r1["shared"]               # exactly equal, step by step
    assert len(set(r0["shared"])) >= STEPS // 4       # decisions were taken and moved the lr
    assert r0["local"] != r1["local"]                 # control: unshared decisions drift apart
