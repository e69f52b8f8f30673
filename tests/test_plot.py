"""Diagrams: Keras's plot_model at the layer level, our block diagram; real pydot and Graphviz."""

from __future__ import annotations

import pytest
from PIL import Image

from archbuilder.diagrams import block_diagram, render
from archbuilder.plan.validate import load_checked_spec
from train_support import REPO, run_cli

RESNET50 = REPO / "architectures" / "resnet50.yaml"
RESNET152 = REPO / "architectures" / "resnet152.yaml"


def png_size(path) -> tuple[int, int]:
    with Image.open(path) as image:
        image.load()  # decodes every pixel, not just the header
        return image.size


def test_block_diagram_of_resnet50(tmp_path):
    checked = load_checked_spec(RESNET50)
    png = render(checked, tmp_path / "blocks.png", "blocks")
    width, height = png_size(png)
    assert 300 <= width <= 1200 and 1200 <= height <= 4000
    svg = render(checked, tmp_path / "blocks.svg", "blocks").read_text(encoding="utf-8")
    # Each box names its block and, as a tooltip, its layers.
    for text in ("res2a", "res5c", "bottleneck", "filters 64, 64, 256", "res2a_branch2a", "fc6", "identity", "projection"):
        assert text in svg, text
    assert sorted(tmp_path.iterdir()) == [tmp_path / "blocks.png", tmp_path / "blocks.svg"]


def test_block_diagram_counts_blocks_and_shortcuts():
    diagram = block_diagram(load_checked_spec(RESNET50).plan)
    assert [b.id for b in diagram.boxes][:3] == ["input", "stem", "res2a"]
    assert diagram.boxes[-1].id == "head" and len(diagram.boxes) == 3 + 16
    shortcuts = [a for a in diagram.arrows if a.shortcut]
    assert [a.head for a in shortcuts if a.shortcut.startswith("projection")] == ["res2a", "res3a", "res4a", "res5a"]
    assert sum(a.shortcut == "identity" for a in shortcuts) == 12
    assert all(a.tail != a.head for a in diagram.arrows)


def test_resnet152_block_diagram_stays_readable(tmp_path):
    # 50 blocks, one box each: the picture grows in height only, and text keeps its size.
    checked = load_checked_spec(RESNET152)
    assert len(block_diagram(checked.plan).boxes) == 3 + 50
    width, height = png_size(render(checked, tmp_path / "r152.png", "blocks"))
    assert width <= 1200 and height <= 8000


@pytest.mark.slow  # ~8 s of Graphviz; by default test_block_diagram_of_resnet50
def test_layer_diagram_of_resnet50(tmp_path):
    from archbuilder.keras.graph import build_model

    checked = load_checked_spec(RESNET50)
    model = build_model(checked.spec, checked.plan)
    svg = render(checked, tmp_path / "layers.svg", "layers", model=model).read_text(encoding="utf-8")
    for text in ("res2a_branch2a", "bn_conv1", "avg_pool", "fc6", "Conv2D"):
        assert text in svg, text
    width, height = png_size(render(checked, tmp_path / "layers.png", "layers", model=model))
    assert width >= 500 and height >= 10_000  # 177 layers, one above the other


def test_plot_cli(tmp_path):
    out = tmp_path / "r50.svg"
    result = run_cli("plot", str(RESNET50), "--out", str(out), "--set", "classes=10")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"Saved {out}"
    assert "fc10" in out.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "args, env, message",
    [
        (["--out", "x.pdf"], {}, "must end in .png or .svg"),
        (["--level", "pixels"], {}, "Invalid value for '--level'"),
        ([], {"PATH": "/nonexistent"}, "apt-get install graphviz"),
    ],
    ids=["bad-suffix", "bad-level", "no-graphviz"],
)
def test_plot_cli_errors_exit_2_without_traceback(tmp_path, args, env, message):
    result = run_cli("plot", str(RESNET50), *args, cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_graph_graphviz_cannot_lay_out_is_one_line_not_a_traceback(tmp_path):
    # Graphviz 2.x's dot aborts (maze.c: chkSgraph assertion, SIGABRT) on the layer graph of
    # tests/specs/two_outputs.yaml; pydot printed dot's output and raised AssertionError (exit 1,
    # a traceback). A dot that lays it out draws it; either way: no traceback, nothing half-written.
    out = tmp_path / "two.svg"
    result = run_cli("plot", str(REPO / "tests" / "specs" / "two_outputs.yaml"), "--level", "layers", "--out", str(out))
    assert "Traceback" not in result.stderr and "stdout, stderr" not in result.stdout, result.stdout + result.stderr
    if result.returncode == 0:
        assert out.read_bytes().lstrip().startswith(b"<?xml")
    else:
        assert result.returncode == 2 and result.stdout == "", result.stdout
        assert result.stderr.strip().splitlines() == [
            line for line in result.stderr.strip().splitlines() if line.startswith("Graphviz's dot failed")]
        assert result.stderr.strip().endswith("draw it at --level blocks") and not out.exists()
