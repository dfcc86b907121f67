"""A sweep over bad inputs to the commands (issue 24): each is refused with exactly one
error line, a non-zero exit, no traceback, and the files already there untouched. The
table is listed, with every other bad input tried, in tests/reliability/BAD_INPUTS.md
(a test below keeps the two in step)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from reliability_helpers import REPO

SHIPPED = REPO / "realtime" / "models" / "affectcam_default.onnx"


def _huge_model(d: Path) -> Path:
    import onnx

    model = onnx.load(str(SHIPPED))
    for p in model.metadata_props:
        if p.key == "affect.input_size":
            p.value = "100000000"
    onnx.save(model, str(d / "huge.onnx"))
    return d / "huge.onnx"


def _eval_dir(d: Path) -> Path:
    (d / "eval").mkdir()
    (d / "eval" / "metrics.json").write_text(json.dumps({"n": 1}))
    return d / "eval"


# (id, command, arguments with {d} for the case's folder, what the one line must say)
SWEEP = [
    ("fit-epochs-0", "train", ["fit", "--epochs", "0", "--data", "affectnet:{d}/none", "--run-dir", "{d}/run"],
     "train.epochs must be a whole number ≥ 1, got 0"),
    ("fit-batch-abc", "train", ["fit", "--set", "train.batch_size=abc", "--data", "affectnet:{d}/none",
                                "--run-dir", "{d}/run"], "train.batch_size must be a whole number ≥ 1, got 'abc'"),
    ("fit-epochs-1.5", "train", ["fit", "--set", "train.epochs=1.5", "--data", "affectnet:{d}/none",
                                 "--run-dir", "{d}/run"], "train.epochs must be a whole number ≥ 1, got 1.5"),
    ("fit-input-size-0", "train", ["fit", "--input-size", "0", "--data", "affectnet:{d}/none", "--run-dir",
                                   "{d}/run"], "model.input_size must be a whole number in [16, 1024]"),
    ("fit-limit-0", "train", ["fit", "--limit", "0", "--data", "affectnet:{d}/none", "--run-dir", "{d}/run"],
     "--limit 0: give at least 1 sample per dataset"),
    ("fit-unknown-key", "train", ["fit", "--config", "{d}/typo.yaml", "--run-dir", "{d}/run"],
     "unknown config key 'train.epoch'"),
    ("eval-limit-0", "train", ["eval", str(SHIPPED), "--data", "affectnet:{d}/none", "--limit", "0", "-o",
                               "{d}/e"], "--limit 0: give at least 1 image"),
    ("eval-over-an-eval", "train", ["eval", str(SHIPPED), "--data", "affectnet:{d}/none", "-o", "{d}/eval"],
     "already holds an evaluation (metrics.json); pass --overwrite"),
    ("bench-limit-0", "export", ["bench", str(SHIPPED), "--limit", "0", "-o", "{d}/bench"],
     "--limit 0: give a number of evaluation faces of at least 1"),
    ("bench-missing", "export", ["bench", "{d}/missing.onnx", "-o", "{d}/bench"], "not found"),
    ("cam-euro-nan", "realtime.cam", ["--euro-min-cutoff", "nan", "--headless"],
     "--euro-min-cutoff nan: must be a finite number above 0"),
    ("cam-euro-beta", "realtime.cam", ["--euro-beta", "-5", "--headless"],
     "--euro-beta -5.0: must be a finite number of at least 0"),
    ("cam-existing-csv", "realtime.cam", ["--csv", "{d}/keep.csv", "--headless"],
     "keep.csv: already exists; pass --overwrite to replace it"),
    ("cam-recover-nothing", "realtime.cam", ["--recover"], "--recover needs the outputs to look for"),
    ("cam-absurd-model", "realtime.cam", ["--model", "{d}/huge.onnx", "--headless", "--source", "{d}/none"],
     "spec input_size 100000000 is absurd"),
]


def _main(command: str):
    if command == "train":
        from train.__main__ import main
    elif command == "export":
        from export.__main__ import main
    else:
        from realtime.cam import main
    return main


@pytest.mark.parametrize("case, command, args, problem", SWEEP, ids=[c[0] for c in SWEEP])
def test_each_bad_input_is_one_line_non_zero_no_traceback_nothing_lost(tmp_path, capsys, case, command, args,
                                                                       problem):
    (tmp_path / "typo.yaml").write_text("train: {epoch: 3}\n")
    (tmp_path / "keep.csv").write_text("an earlier recording\n")
    _eval_dir(tmp_path)
    if case == "cam-absurd-model":
        _huge_model(tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    code = _main(command)([a.replace("{d}", str(tmp_path)) for a in args])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    assert code not in (0, None) and "Traceback" not in err, err[-1500:]
    assert len(lines) == 1 and problem in lines[0], err[-1500:]
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before  # nothing written, nothing replaced, nothing lost


def test_the_sweep_is_listed_in_bad_inputs_md():
    listed = (Path(__file__).parent / "BAD_INPUTS.md").read_text(encoding="utf-8")
    for case, *_ in SWEEP:
        assert f"`{case}`" in listed, case
