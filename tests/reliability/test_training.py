"""Training runs that are killed, damaged or resumed with changes, through
`python -m train fit` / `eval`: at most one epoch lost, the same figures as an
uninterrupted run, a damaged last.pt falls back with a warning, overrides given
with --resume applied or refused, a run's own metrics.json never overwritten."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys

import pytest
import torch
from gated_fit import wait_for_gate
from reliability_helpers import REPO, TINY_FIT, tiny_affectnet

from train.__main__ import main as train_main


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root, _ = tiny_affectnet(tmp_path_factory.mktemp("data") / "affectnet", 32)
    return root


def fit_args(data, run_dir, epochs: int, *extra) -> list[str]:
    return ["fit", "--data", f"affectnet:{data}", "--run-dir", str(run_dir), *TINY_FIT, "--epochs", str(epochs),
            "--seed", "3", *extra]


def history(run_dir) -> list[dict]:
    with open(run_dir / "history.csv") as fh:
        return list(csv.DictReader(fh))


def epoch_of(path) -> int:
    return int(torch.load(path, weights_only=True)["epoch"])


@pytest.fixture(scope="module")
def finished(data, tmp_path_factory):
    """An uninterrupted 3-epoch run: the figures a killed-and-resumed run must reach."""
    run = tmp_path_factory.mktemp("runs") / "whole"
    assert train_main(fit_args(data, run, 3)) == 0
    return run


def test_sigkill_after_a_checkpoint_then_resume_reaches_the_same_figures(data, finished, tmp_path, capsys):
    run, gate = tmp_path / "killed", tmp_path / "gate"
    gate.mkdir()
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}", "OMP_NUM_THREADS": "1"}
    # Held after epoch 1 is saved (tests/gated_fit.py): the kill lands mid-run on any CPU.
    proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "gated_fit.py"), str(gate), "1", "--",
                             *fit_args(data, run, 3)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_gate(gate, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = epoch_of(run / "last.pt")
    rows = history(run)
    assert saved == 1 and len(rows) == 1  # the history never lists an epoch the checkpoint lacks
    assert train_main(["fit", "--run-dir", str(run), "--resume"]) == 0
    resumed, whole = history(run), history(finished)
    assert [r["epoch"] for r in resumed] == ["1", "2", "3"]
    for key in ("val_loss", "val_accuracy", "train_loss"):
        assert float(resumed[-1][key]) == pytest.approx(float(whole[-1][key]), rel=1e-3, abs=1e-4), key


def test_a_corrupt_last_pt_falls_back_to_the_previous_checkpoint_with_a_warning(data, tmp_path, caplog, capsys):
    run = tmp_path / "run"
    assert train_main(fit_args(data, run, 2)) == 0
    assert epoch_of(run / "last.pt") == 2 and epoch_of(run / "last.prev.pt") == 1
    data_bytes = (run / "last.pt").read_bytes()
    (run / "last.pt").write_bytes(data_bytes[: len(data_bytes) // 3])
    stale = run / ".last.ab12cd34.partial.pt"  # what a kill in the middle of atomic_write_bytes leaves
    stale.write_bytes(b"\0" * 1024)
    assert train_main(["fit", "--run-dir", str(run), "--resume", "--epochs", "3"]) == 0
    assert "not a readable affectcam checkpoint" in caplog.text and "resuming from" in caplog.text
    assert str(run / "last.prev.pt") in caplog.text
    assert not stale.exists()
    assert [r["epoch"] for r in history(run)] == ["1", "2", "3"] and epoch_of(run / "last.pt") == 3


def test_resume_overrides_are_applied_or_refused_never_ignored(data, tmp_path, capsys):
    run = tmp_path / "run"
    assert train_main(fit_args(data, run, 1)) == 0
    capsys.readouterr()
    assert train_main(["fit", "--run-dir", str(run), "--resume", "--epochs", "2"]) == 0
    out = capsys.readouterr().out
    assert "resume: train.epochs 1 → 2" in out and len(history(run)) == 2
    before = (run / "last.pt").read_bytes()
    for args, problem in ((["--lr", "0.5"], "train.lr cannot change in a started run"),
                          (["--set", "model.backbone=resnet50"], "model.backbone cannot change"),
                          (["--epochs", "1"], "train.epochs 1 is below the 2 epochs already trained"),
                          (["--data", f"affectnet:{data}"], "--data cannot be given with --resume")):
        assert train_main(["fit", "--run-dir", str(run), "--resume", *args]) == 2
        err = capsys.readouterr().err
        assert problem in err and err.count("\n") == 1, err
    assert (run / "last.pt").read_bytes() == before  # a refused resume touches nothing
    assert train_main(["fit", "--run-dir", str(run), "--resume"]) == 0
    assert "already finished its 2 epochs; nothing to train" in capsys.readouterr().out


def test_eval_into_the_run_folder_is_refused_and_its_metrics_json_kept(data, finished, capsys):
    before = (finished / "metrics.json").read_text()
    assert train_main(["eval", str(finished / "checkpoint.pt"), "-o", str(finished)]) == 2
    err = capsys.readouterr().err
    assert "that is a training run's folder" in err and "eval_test" in err and err.count("\n") == 1
    assert (finished / "metrics.json").read_text() == before
