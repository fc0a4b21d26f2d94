"""GNSScheduler in a PyTorch Lightning module (``pip install lightning``).

Lightning calls ``scheduler.step()`` without arguments after every optimizer step when the
scheduler is registered with ``"interval": "step"``; hand it the loss with ``observe``.
"""
from __future__ import annotations

import lightning as L
import torch
from torch import nn

from gnsched import GNSAgent
from gnsched.scheduler import GNSScheduler


class Classifier(L.LightningModule):
    def __init__(self, agent: GNSAgent, total_steps: int, lr: float = 1e-3):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
        self.total_steps, self.lr = total_steps, lr
        object.__setattr__(self, "agent", agent)  # not a submodule: the agent is not trained or saved

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        self.lr_schedulers().observe(loss)  # the training loss of the window, for the features
        return loss

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.net.parameters(), lr=self.lr)
        sched = GNSScheduler(opt, self.net, self.agent, interval=10, total_steps=self.total_steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


if __name__ == "__main__":
    from gnsched.tasks import get_task

    task = get_task("digits-mlp")
    data = torch.utils.data.TensorDataset(task.splits.train_x, task.splits.train_y)
    loader = torch.utils.data.DataLoader(data, batch_size=64, shuffle=True)
    epochs = 5
    model = Classifier(GNSAgent.load("fashion-mnist"), total_steps=epochs * len(loader))
    L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False).fit(model, loader)
    print("final learning rate:", model.lr_schedulers().get_last_lr())
