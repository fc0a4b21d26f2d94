"""The Lightning example (examples/lightning_example.py) trains with GNSScheduler."""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch

L = pytest.importorskip("lightning", reason="Lightning is an optional dependency (pip install lightning)")

from gnsched.agent import GNSAgent  # noqa: E402
from gnsched.config import AgentConfig  # noqa: E402


def test_lightning_configure_optimizers(digits_task):
    spec = importlib.util.spec_from_file_location(
        "lightning_example", Path(__file__).resolve().parents[1] / "examples" / "lightning_example.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    torch.manual_seed(0)
    agent = GNSAgent(AgentConfig(hidden=16, head_hidden=8, type_dim=4))
    with torch.no_grad():
        agent.actor[-1].bias.fill_(-0.5)  # a policy that lowers the learning rate
    data = torch.utils.data.TensorDataset(digits_task.splits.train_x[:320], digits_task.splits.train_y[:320])
    loader = torch.utils.data.DataLoader(data, batch_size=32)
    model = example.Classifier(agent, total_steps=20)
    L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
              enable_progress_bar=False, enable_model_summary=False).fit(model, loader)
    sched = model.lr_schedulers()
    assert sched.optimizer_steps == 20 and sched.decisions == 2
    assert math.isfinite(sched.last_loss)
    assert sched.get_last_lr()[0] < 1e-3
