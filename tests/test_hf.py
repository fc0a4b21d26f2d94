"""GNSScheduler inside Hugging Face's Trainer (passed through ``optimizers=``)."""
from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("accelerate", reason="the Hugging Face Trainer needs accelerate (pip install gnsched[hf])")
transformers = pytest.importorskip("transformers")

from gnsched.agent import GNSAgent  # noqa: E402
from gnsched.config import AgentConfig  # noqa: E402
from gnsched.scheduler import GNSScheduler  # noqa: E402


class _Parity(torch.utils.data.Dataset):
    def __init__(self, n: int = 64):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randint(0, 100, (n, 12), generator=g)
        self.y = (self.x[:, 0] > 50).long()

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"input_ids": self.x[i], "attention_mask": torch.ones(12, dtype=torch.long), "labels": self.y[i]}


def _train(out, agent, resume=None):
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=32)
    model = transformers.BertForSequenceClassification(cfg)
    args = transformers.TrainingArguments(str(out), per_device_train_batch_size=8, num_train_epochs=2, use_cpu=True,
                                          save_strategy="steps", save_steps=8, report_to=[], seed=0,
                                          disable_tqdm=True, logging_steps=1000)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = GNSScheduler(opt, model, agent, interval=2, total_steps=16)
    transformers.Trainer(model=model, args=args, train_dataset=_Parity(), optimizers=(opt, sched)).train(
        resume_from_checkpoint=resume)
    return sched


def test_trainer_runs_and_resumes_from_its_checkpoint(tmp_path):
    torch.manual_seed(1)
    agent = GNSAgent(AgentConfig(hidden=16, head_hidden=8, type_dim=4))
    with torch.no_grad():
        agent.actor[-1].bias.fill_(0.5)  # a policy that visibly moves the learning rate
    full = _train(tmp_path / "run", agent)
    assert full.optimizer_steps == 16 and full.decisions == 8  # 2 epochs x 8 steps, K = 2
    assert full.graph.num_repeated == 2  # the two BERT layers
    assert full.last_loss is not None and math.isfinite(full.last_loss)  # read from the model's output
    assert full.get_last_lr()[0] != pytest.approx(1e-3)
    assert (tmp_path / "run" / "checkpoint-8" / "scheduler.pt").exists()
    resumed = _train(tmp_path / "run", agent, resume=str(tmp_path / "run" / "checkpoint-8"))
    assert resumed.decisions == 8 and resumed.last_epoch == 16
    assert resumed.get_last_lr() == full.get_last_lr()
