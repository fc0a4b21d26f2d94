"""Image-task networks: shapes, graph blocks (the ResNet's 6 repeated BasicBlocks), tasks."""
from __future__ import annotations

import torch
from typer.testing import CliRunner

from gnsched.graph import build_graph
from gnsched.models import SmallResNet, SmallVGG


def test_resnet_graph_has_six_repeated_blocks():
    torch.manual_seed(0)
    model = SmallResNet()
    assert model(torch.randn(2, 1, 14, 14)).shape == (2, 10)
    g = build_graph(model, torch.randn(2, 1, 14, 14))
    assert g.partition == "repeated" and g.num_repeated == 6
    assert g.block_kinds == ["input"] + ["repeated"] * 6 + ["output"]
    # stem conv+bn, 6 blocks × (2 conv + 2 bn), 2 projection shortcuts × (conv + bn), fc
    assert g.num_nodes == 2 + 6 * 4 + 2 * 2 + 1
    assert g.block_names[1:3] == ["stages.0.0", "stages.0.1"]


def test_vgg_graph_is_layerwise():
    model = SmallVGG()
    assert model(torch.randn(2, 1, 14, 14)).shape == (2, 10)
    g = build_graph(model, torch.randn(2, 1, 14, 14))
    assert g.partition == "layerwise" and g.num_nodes == 6 * 2 + 1


def test_graph_command_on_resnet_task(fashion_dir):
    from gnsched.cli import app

    res = CliRunner().invoke(app, ["graph", "--task", "fashion-mnist-resnet", "--data-dir", str(fashion_dir)])
    assert res.exit_code == 0, res.output
    assert res.output.count("repeated") >= 6 and "31 nodes" in res.output


def test_image_task_shapes(fashion_dir):
    from gnsched.tasks import get_task

    task = get_task("fashion-mnist-vgg", fashion_dir)
    assert task.splits.sizes() == (6_000, 3_000, 10_000)
    assert task.splits.train_x.shape[1:] == (1, 14, 14) and task.steps_per_epoch() == 47
