"""Issue 24 item 9 (export side): the benchmark's figures say what data they
come from, and its default is a run's held-out part, never faces a model
may have been trained on."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from export.__main__ import main
from export.bench import BenchOptions, run_bench, write_tables

FAST = dict(batch_sizes=(1,), threads=1, warmup=0, min_iters=2, min_seconds=0)


@pytest.fixture
def run_dir(tmp_path, small_onnx, affectnet_root):
    """A run folder: the model beside a splits.json whose test part lists 6
    AffectNet faces, two of them twice (as two held-out parts can)."""
    images = sorted((affectnet_root / "images").glob("*.jpg"))[:14]
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(small_onnx, run / "model.onnx")
    test = [str(p) for p in images[8:]]
    (run / "splits.json").write_text(json.dumps({"train": [str(p) for p in images[:8]], "val": [],
                                                 "test": test + test[:2]}))
    return run, test


def test_bench_defaults_to_the_runs_held_out_part_and_names_it_beside_every_figure(run_dir):
    run, test = run_dir
    options = BenchOptions(**FAST)
    rows = run_bench([run / "model.onnx"], options)
    assert options.data == run / "splits.json"
    assert [r.n_eval for r in rows] == [len(test)]  # each held-out face once, no training face
    assert rows[0].accuracy is not None and rows[0].valence_ccc is not None
    assert "splits.json" in rows[0].data and "held out" in rows[0].data
    md = write_tables(rows, run / "bench", options)
    assert md.splitlines()[0].endswith("| data |") and "held out" in md.splitlines()[2]
    assert json.loads((run / "bench.json").read_text())["rows"][0]["data"] == rows[0].data


def test_bench_on_a_folder_names_that_folder_beside_its_figures(small_onnx, affectnet_root):
    rows = run_bench([small_onnx], BenchOptions(data=affectnet_root, limit=4, **FAST))
    assert str(affectnet_root) in rows[0].data and rows[0].n_eval == 4


def test_a_model_benched_on_a_dataset_it_names_in_trained_on_is_warned_about(tmp_path, make_ckpt, affectnet_root,
                                                                             caplog):
    from export.onnx_export import export_onnx
    from train.checkpoint import load_checkpoint

    ckpt = make_ckpt(tmp_path / "m.pt", "small_cnn", size=64)
    data = load_checkpoint(ckpt)
    data["spec"]["trained_on"] = "affectnet:affectnet+rafdb:rafdb"
    torch.save(data, ckpt)
    model = export_onnx(ckpt, tmp_path / "m.onnx", parity_data=affectnet_root)
    caplog.set_level("WARNING")
    run_bench([model], BenchOptions(data=affectnet_root, limit=2, **FAST))
    assert "may include training faces" in caplog.text and "splits.json" in caplog.text


@pytest.mark.parametrize("limit", ["0", "-3"])
def test_bench_limit_below_one_is_one_line(small_onnx, capsys, limit):
    assert main(["bench", str(small_onnx), "--limit", limit, "-o", str(small_onnx.parent / "b")]) == 1
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and f"--limit {limit}" in err[0] and "at least 1" in err[0]
