"""Issue 24 item 13 (training side): one schema check for the YAML config, --set
and the flags. Each bad value is one line naming the key and what it takes,
exit 2, before any data is read and with nothing written."""

from __future__ import annotations

import pytest

from train.__main__ import main as train_main

# (arguments after `fit`, config file text or None, what the one line must say)
BAD = [
    (["--epochs", "0"], None, "train.epochs must be a whole number ≥ 1, got 0"),
    (["--set", "train.epochs=1.5"], None, "train.epochs must be a whole number ≥ 1, got 1.5"),
    (["--input-size", "0"], None, "model.input_size must be a whole number in [16, 1024] or null, got 0"),
    (["--input-size", "100000"], None, "model.input_size must be a whole number in [16, 1024]"),
    (["--limit", "0"], None, "--limit 0: give at least 1 sample per dataset"),
    (["--limit", "-2"], None, "--limit -2: give at least 1 sample per dataset"),
    (["--set", "train.batch_size=abc"], None, "train.batch_size must be a whole number ≥ 1, got 'abc'"),
    (["--batch-size", "0"], None, "train.batch_size must be a whole number ≥ 1, got 0"),
    (["--lr", "nan"], None, "train.lr must be a number > 0, got 'nan'"),
    (["--lr", "-1"], None, "train.lr must be a number > 0, got -1.0"),
    (["--set", "model.dropout=1.5"], None, "model.dropout must be a number in [0, 1), got 1.5"),
    (["--set", "train.freeze_backbone=maybe"], None, "train.freeze_backbone must be true or false, got 'maybe'"),
    (["--set", "loss.va_loss=l3"], None, "loss.va_loss must be one of ccc, mse, ccc+mse, got 'l3'"),
    (["--set", "train.epochs=[1, 2]"], None, "train.epochs must be a whole number ≥ 1, got [1, 2]"),
    (["--set", "train.epochs_typo=3"], None, "unknown config key 'train.epochs_typo'"),
    ([], "train: {epoch: 3}\n", "unknown config key 'train.epoch'"),
    ([], "modle: {backbone: small_cnn}\n", "unknown config key 'modle'"),
    ([], "train: {lr: fast}\n", "train.lr must be a number > 0, got 'fast'"),
    ([], "train: {epochs: '3'}\n", "train.epochs must be a whole number ≥ 1, got '3'"),
    ([], "train: 5\n", "train must be a section"),
    ([], "data: {augment: {hflip: 2}}\n", "data.augment.hflip must be a number in [0, 1], got 2"),
    ([], "data: {num_workers: -1}\n", "data.num_workers must be a whole number ≥ 0, got -1"),
]


@pytest.mark.parametrize("args, config, problem", BAD, ids=[b[2][:40] for b in BAD])
def test_a_bad_config_value_is_one_line_naming_the_key_before_any_data_is_read(tmp_path, capsys, args, config,
                                                                                problem):
    run = tmp_path / "run"
    extra = []
    if config is not None:
        (tmp_path / "cfg.yaml").write_text(config)
        extra = ["--config", str(tmp_path / "cfg.yaml")]
    # A dataset root that does not exist: the check must come before the data is read.
    rc = train_main(["fit", *extra, "--data", f"affectnet:{tmp_path / 'nowhere'}", "--run-dir", str(run), *args])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: ") and problem in lines[0], err
    assert "nowhere" not in lines[0] and "Traceback" not in err
    assert not run.exists() or not any(run.iterdir())


def test_every_shipped_config_and_the_readme_overrides_pass_the_check(tmp_path):
    from pathlib import Path

    from train.config import check_config, load_config

    repo = Path(__file__).resolve().parents[2]
    for path in sorted((repo / "configs").rglob("*.yaml")):
        check_config(load_config(path))
    cfg = load_config(repo / "configs" / "default.yaml", ["train.lr=3e-4", "data.balance=oversample"])
    check_config(cfg)
    assert cfg["train"]["lr"] == pytest.approx(3e-4)  # PyYAML reads 3e-4 as a string; a number is meant
