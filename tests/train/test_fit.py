"""The fit loop on real images: loss goes down, runs resume after a kill,
datasets mix with masks, reference configs run, bad input fails clearly."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from gated_fit import wait_for_gate

from train.__main__ import main as train_main
from train.config import ConfigError, load_config
from train.fit import TrainError, fit
from train.losses import masked_cross_entropy

REPO = Path(__file__).resolve().parents[2]
NO_AUG = {"hflip": 0.0, "rotation": 0.0, "scale": 0.0, "shift": 0.0, "brightness": 0.0, "contrast": 0.0,
          "erasing": 0.0, "greyscale": 0.0}


def tiny_config(tmp_path: Path, affectnet_root: Path, **train) -> dict:
    cfg = load_config(REPO / "configs" / "default.yaml")
    cfg["run_dir"] = str(tmp_path / "run")
    cfg["model"].update(input_size=64, dropout=0.0, blendshapes=False)
    cfg["data"].update(datasets=[{"type": "affectnet", "root": str(affectnet_root), "limit": 48}],
                       num_workers=0, augment=dict(NO_AUG), cache=False)
    cfg["train"].update({"epochs": 3, "batch_size": 16, "warmup_epochs": 0, "eval_tta": False,
                         "early_stopping_patience": None, "samples_per_epoch": None, "ema": None,
                         "train_on_val": False, "threads": None, **train})
    return cfg


def read_history(run_dir: Path) -> list[dict]:
    with open(run_dir / "history.csv") as fh:
        return list(csv.DictReader(fh))


def test_a_few_steps_reduce_the_training_loss(tmp_path, affectnet_root):
    from torch.utils.data import DataLoader

    from affect.datasets.loaders import load_dataset
    from train import data as tdata
    from train.fit import compute_loss, train_one_epoch
    from train.models import build_model

    cfg = tiny_config(tmp_path, affectnet_root, lr=1e-3, label_smoothing=0.0)
    model = build_model("mobilenet_v2", input_size=64, dropout=0.0)
    info = load_dataset({"type": "affectnet", "root": str(affectnet_root), "limit": 16})
    ds = tdata.AffectDataset(info.samples, size=64, mean=model.mean, std=model.std, labels=cfg["labels"])
    loader = DataLoader(ds, batch_size=16, collate_fn=tdata.collate_skip_bad)
    batch = next(iter(loader))

    def eval_loss() -> float:
        model.eval()
        with torch.no_grad():
            return float(compute_loss(model(batch["image"]), batch, cfg, None)[0])

    before = eval_loss()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(8):  # 8 real optimisation steps on the same 16 faces
        train_one_epoch(model, loader, optimizer, lambda: None, cfg, torch.device("cpu"), epoch, None, None, None)
    assert eval_loss() < 0.8 * before


def test_fit_writes_a_complete_run_directory(tmp_path, affectnet_root):
    cfg = tiny_config(tmp_path, affectnet_root, epochs=2, max_steps=4)
    run = fit(cfg)
    rows = read_history(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    for name in ("checkpoint.pt", "last.pt", "config.yaml", "metrics.json", "run.json", "splits.json",
                 "history.csv", "curves.png"):
        assert (run / name).is_file(), name
    assert any((run / "tb").iterdir())
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    assert ckpt["spec"]["labels"][0] == "Neutral" and ckpt["spec"]["input_size"] == 64
    splits = yaml.safe_load((run / "splits.json").read_text())
    assert splits["test"] and not set(splits["test"]) & set(splits["train"])  # held out, never trained on


def test_resume_after_a_kill_loses_at_most_one_epoch(tmp_path, affectnet_root):
    cfg = tiny_config(tmp_path, affectnet_root, epochs=4)
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    run, gate = Path(cfg["run_dir"]), tmp_path / "gate"
    gate.mkdir()
    # Held once epoch 2 is saved (tests/gated_fit.py): killed mid-run on any CPU, where polling
    # for last.pt let a fast CPU finish all 4 epochs before the kill.
    proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "gated_fit.py"), str(gate), "2", "--",
                             "fit", "--config", str(cfg_path)], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_gate(gate, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(read_history(run))
    assert done == 2
    fit(cfg, resume=True)
    rows = read_history(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] == 4


def test_fer2013_mixes_with_affectnet_under_masks(tmp_path, affectnet_root, fer2013_root):
    cfg = tiny_config(tmp_path, affectnet_root, epochs=1, max_steps=3)
    cfg["data"]["datasets"].append({"type": "fer2013", "root": str(fer2013_root), "usage": "Training", "limit": 40,
                                    "role": "train", "weight": 0.5})
    run = fit(cfg)
    info = yaml.safe_load((run / "run.json").read_text())
    assert info["n_train"] > 40  # both datasets reached the training split


def test_samples_per_epoch_sets_the_epoch_length(tmp_path, affectnet_root, fer2013_root):
    cfg = tiny_config(tmp_path, affectnet_root, epochs=1, batch_size=8, samples_per_epoch=24)
    cfg["data"]["datasets"].append({"type": "fer2013", "root": str(fer2013_root), "limit": 40,
                                    "role": "train", "weight": 0.4})
    run = fit(cfg)
    assert [int(r["train_steps"]) for r in read_history(run)] == [3]  # 24 draws / batch 8, not 1 pass over 70


def test_ema_saves_the_averaged_weights_and_resumes_them(tmp_path, affectnet_root):
    cfg = tiny_config(tmp_path, affectnet_root, epochs=3, batch_size=8, ema=0.5)
    run = fit(cfg)
    last = torch.load(run / "last.pt", weights_only=True)
    best = torch.load(run / "checkpoint.pt", weights_only=True)
    assert last["ema_n"] == sum(int(r["train_steps"]) for r in read_history(run)) > 3  # one update per step
    key = "valence_arousal.weight"
    trained, averaged = last["state_dict"][key], last["ema_state"][key]
    assert not torch.allclose(trained, averaged)  # the average lags the trained weights
    if best["epoch"] == 3:  # the saved model is the average, not the trained weights
        assert torch.equal(best["state_dict"][key], averaged)
    with pytest.raises(TrainError, match="train.ema must be a decay between 0 and 1"):
        fit(tiny_config(tmp_path / "bad", affectnet_root, ema=1.5))


def test_train_on_val_trains_on_val_and_keeps_the_last_epoch(tmp_path, affectnet_root):
    base = fit(tiny_config(tmp_path / "a", affectnet_root, epochs=1, max_steps=1))
    run = fit(tiny_config(tmp_path / "b", affectnet_root, epochs=3, train_on_val=True,
                          early_stopping_patience=1))
    before, after = (json.loads((r / "splits.json").read_text()) for r in (base, run))
    assert after["test"] == before["test"]  # the held-out part never moves
    assert set(after["train"]) == set(before["train"]) | set(before["val"])
    assert [int(r["epoch"]) for r in read_history(run)] == [1, 2, 3]  # no early stop on seen data
    assert torch.load(run / "checkpoint.pt", weights_only=True)["epoch"] == 3


def test_masked_classes_do_not_change_the_loss():
    logits = torch.randn(4, 8)
    target = torch.tensor([0, 1, 6, -1])
    mask = torch.ones(4, 8, dtype=torch.bool)
    mask[:, 7] = False  # a FER2013-like dataset: no Contempt
    base = masked_cross_entropy(logits, target, mask, smoothing=0.1)
    pushed = logits.clone()
    pushed[:, 7] += 50.0  # whatever the model says about Contempt
    assert torch.allclose(base, masked_cross_entropy(pushed, target, mask, smoothing=0.1))
    assert not torch.allclose(base, masked_cross_entropy(pushed, target, None, smoothing=0.1))


def _reference_configs() -> list:
    """Every reference config; those on the big ImageNet backbones (~25 s each here) marked slow."""
    configs = []
    for path in sorted((REPO / "configs" / "reference").glob("*.yaml")):
        heavy = yaml.safe_load(path.read_text())["model"]["backbone"] in ("vgg16", "resnet50")
        configs.append(pytest.param(path, id=path.stem, marks=[pytest.mark.slow] if heavy else []))
    return configs


@pytest.mark.parametrize("config", _reference_configs())
def test_reference_config_runs_a_few_steps(tmp_path, config, affectnet_root, fer2013_root):
    cfg = load_config(config, [f"run_dir={tmp_path / 'run'}", "train.epochs=1", "train.max_steps=2",
                               "train.batch_size=8", "data.num_workers=0"])
    cfg["model"]["input_size"] = min(int(cfg["model"]["input_size"] or 64), 64)
    if not has_local_weights(cfg["model"]["backbone"]):
        cfg["model"]["pretrained"] = "none"  # torchvision's weights would be a download
    for d in cfg["data"]["datasets"]:
        d["root"] = str(REPO / d["root"]) if not os.path.isabs(d["root"]) else d["root"]
        d["limit"] = 60
    run = fit(cfg)
    metrics = yaml.safe_load((run / "metrics.json").read_text())
    assert metrics["expression"]["labels"] == cfg["labels"]


def has_local_weights(backbone: str) -> bool:
    """Its registry entry has a weight file on this machine (no download needed)."""
    from train.models import REGISTRY, weight_dirs

    return any((d / t.source).is_file() for t in REGISTRY[backbone].weights if t.kind == "local"
               for d in weight_dirs())


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    code = train_main(args)
    captured = capsys.readouterr()
    return code, captured.err


def test_bad_inputs_fail_with_one_clear_line(tmp_path, affectnet_root, capsys):
    code, err = run_cli(["fit", "--backbone", "resnet9000", "--run-dir", str(tmp_path / "r"),
                         "--data", f"affectnet:{affectnet_root}", "--limit", "20"], capsys)
    assert code == 2 and "unknown backbone 'resnet9000'" in err and err.count("\n") == 1
    code, err = run_cli(["fit", "--data", f"affectnet:{tmp_path / 'nowhere'}", "--run-dir", str(tmp_path / "r")],
                        capsys)
    assert code == 2 and "nowhere" in err and "not found" in err
    code, err = run_cli(["fit", "--config", str(tmp_path / "missing.yaml")], capsys)
    assert code == 2 and "missing.yaml: config file not found" in err
    with pytest.raises(ConfigError, match="unknown config key 'train.lrr'"):
        load_config(None, ["train.lrr=1"])
    with pytest.raises(TrainError, match="train.samples_per_epoch must be a positive whole number of draws, got -5"):
        fit(tiny_config(tmp_path, affectnet_root, samples_per_epoch=-5))
    cfg = tiny_config(tmp_path, affectnet_root)
    cfg["data"]["datasets"][0]["role"] = "test"  # nothing left to train on
    with pytest.raises(TrainError, match="training split is empty"):
        fit(cfg)


def test_corrupt_images_are_skipped_and_counted(tmp_path, affectnet_root):
    root = tmp_path / "affectnet"
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    ids = sorted(p.stem for p in (affectnet_root / "images").glob("*.jpg"))[:30]
    for i in ids:
        (root / "images" / f"{i}.jpg").symlink_to(affectnet_root / "images" / f"{i}.jpg")
        for kind in ("exp", "val", "aro", "lnd"):
            src = affectnet_root / "annotations" / f"{i}_{kind}.npy"
            (root / "annotations" / src.name).symlink_to(src)
    broken = root / "images" / f"{ids[0]}.jpg"
    broken.unlink()
    broken.write_bytes((affectnet_root / "images" / f"{ids[0]}.jpg").read_bytes()[:300])
    cfg = tiny_config(tmp_path, root, epochs=1)
    cfg["data"]["split"]["fractions"] = [0.7, 0.2, 0.1]
    rows = read_history(fit(cfg))
    assert int(rows[0]["bad_images"]) >= 1


def test_fit_help_documents_datasets_models_and_examples(capsys):
    with pytest.raises(SystemExit):
        train_main(["fit", "--help"])
    text = capsys.readouterr().out
    for needle in ("affectnet_csv", "fer2013_csv", "ckplus", "efficientnet_lite0", "unfreeze_after",
                   "--resume", "torchrun", "oversample", "Examples:"):
        assert needle in text, needle


def test_torchrun_trains_data_parallel_on_cpu(tmp_path, affectnet_root):
    """`torchrun --nproc_per_node 2 -m train fit` with no code change: two gloo
    processes share each epoch (each draws half the training part)."""
    cfg = tiny_config(tmp_path, affectnet_root, epochs=1, batch_size=4, threads=1)
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "train", "fit", "--config", str(cfg_path)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = Path(cfg["run_dir"])
    info = yaml.safe_load((run / "run.json").read_text())
    assert info["world_size"] == 2
    per_rank = -(-info["n_train"] // 2)  # DistributedSampler pads to equal halves
    assert [int(r["train_steps"]) for r in read_history(run)] == [per_rank // 4]
    assert torch.load(run / "checkpoint.pt", weights_only=True)["spec"]["input_size"] == 64


def test_train_fraction_thins_the_training_faces_only(tmp_path, affectnet_root):
    from collections import Counter

    from train.fit import build_splits

    cfg = tiny_config(tmp_path, affectnet_root)
    cfg["data"]["datasets"][0]["limit"] = 200
    full = build_splits(cfg)
    cfg["data"]["datasets"][0]["train_fraction"] = 0.5
    half = build_splits(cfg)
    paths = {split: [[s.path for s in p.samples] for p in getattr(half, split)] for split in ("train", "val", "test")}
    assert paths["test"] == [[s.path for s in p.samples] for p in full.test]  # held-out part untouched
    assert paths["val"] == [[s.path for s in p.samples] for p in full.val]
    kept, everything = half.train[0].samples, full.train[0].samples
    assert {s.path for s in kept} < {s.path for s in everything}
    assert abs(len(kept) - len(everything) / 2) <= 1
    by_class_kept, by_class_all = Counter(s.expression for s in kept), Counter(s.expression for s in everything)
    assert all(abs(by_class_kept[c] - n / 2) <= 1.5 for c, n in by_class_all.items())  # stratified
    assert half.train[0].draw_weight == full.train[0].draw_weight  # drawn as often, from fewer faces
    # with train_on_val the val share joins training thinned the same way
    cfg["train"].update(epochs=1, max_steps=1, train_on_val=True)
    info = json.loads((fit(cfg) / "run.json").read_text())
    assert info["n_train"] == len(kept) + len(half.val[0].thinned().samples) < len(everything) + len(full.val[0].samples)


@pytest.mark.parametrize("bad", [0, 1.5, "half", True])
def test_train_fraction_out_of_range_is_a_one_line_error(tmp_path, affectnet_root, bad):
    cfg = tiny_config(tmp_path, affectnet_root)
    cfg["data"]["datasets"][0]["train_fraction"] = bad
    with pytest.raises(TrainError, match="train_fraction must be a number in"):
        fit(cfg)


def test_freeze_blocks_keeps_the_first_blocks_and_their_statistics(tmp_path, affectnet_root):
    """train.freeze_blocks 2: the stem and first block end the fit exactly as ImageNet left them
    (weights and BatchNorm statistics), the block after them moved; a bad count is one line."""
    from train.models import build_model

    start = build_model("mobilenet_v2", input_size=64, dropout=0.0).state_dict()
    run = fit(tiny_config(tmp_path, affectnet_root, epochs=1, batch_size=8, freeze_blocks=2, lr=1e-2))
    end = torch.load(run / "checkpoint.pt", weights_only=True)["state_dict"]
    frozen = [k for k in start if k.startswith(("backbone.net.features.0.", "backbone.net.features.1."))]
    moved = [k for k in start if k.startswith("backbone.net.features.2.") and k.endswith("weight")]
    assert any(k.endswith("running_mean") for k in frozen)
    assert all(torch.equal(start[k], end[k]) for k in frozen)
    assert any(not torch.equal(start[k], end[k]) for k in moved)
    with pytest.raises(TrainError, match="train.freeze_blocks 19 would freeze all 19 blocks"):
        fit(tiny_config(tmp_path / "all", affectnet_root, freeze_blocks=19))
    with pytest.raises(TrainError, match="train.freeze_blocks must be a whole number"):
        fit(tiny_config(tmp_path / "neg", affectnet_root, freeze_blocks=-1))


def test_channels_last_changes_the_layout_not_the_results(tmp_path, affectnet_root):
    """One training step on real faces in NCHW and in NHWC: the same loss and gradients up to float
    rounding; a channels-last fit's checkpoint loads into a plain model."""
    from torch.utils.data import DataLoader

    from affect.datasets.loaders import load_dataset
    from train import data as tdata
    from train.checkpoint import model_from_checkpoint
    from train.fit import compute_loss
    from train.models import build_model

    cfg = tiny_config(tmp_path, affectnet_root, label_smoothing=0.0)
    info = load_dataset({"type": "affectnet", "root": str(affectnet_root), "limit": 8})
    grads = []
    for channels_last in (False, True):
        torch.manual_seed(0)
        model = build_model("mobilenet_v2", input_size=64, dropout=0.0)
        ds = tdata.AffectDataset(info.samples, size=64, mean=model.mean, std=model.std, labels=cfg["labels"])
        batch = next(iter(DataLoader(ds, batch_size=8, collate_fn=tdata.collate_skip_bad)))
        if channels_last:
            model.to(memory_format=torch.channels_last)
        model.train()
        loss, _ = compute_loss(model(batch["image"]), batch, cfg, None)
        loss.backward()
        grads.append((loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (loss_a, ga), (loss_b, gb) = grads
    assert loss_a == pytest.approx(loss_b, rel=1e-5)
    # Whole gradient vector alike to float32 rounding through 19 train-mode BatchNorms on 8 faces
    # (~1e-3 here; a layout mistake gives O(1)); per tensor, alike on the scale of the largest
    # gradient (biases of BatchNorms that a later BatchNorm re-centres have a true gradient of ~0).
    flat_a, flat_b = (torch.cat([g[n].flatten() for n in ga]) for g in (ga, gb))
    assert float((flat_a - flat_b).norm() / flat_a.norm()) < 1e-2
    scale = float(flat_a.abs().max())
    assert all(float((ga[n] - gb[n]).abs().max()) < 1e-2 * scale for n in ga)
    run = fit(tiny_config(tmp_path / "nhwc", affectnet_root, epochs=1, batch_size=8, channels_last=True))
    model, _, _ = model_from_checkpoint(run / "checkpoint.pt")
    assert model(torch.zeros(1, 3, 64, 64))["expression"].shape == (1, 8)


def _old_cosine(step: int, warmup: int, total: int) -> float:
    """The schedule as fit wrote it by hand before it used torch's schedulers."""
    import math

    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min((step - warmup) / max(total - warmup, 1), 1.0)))


@pytest.mark.parametrize("warmup_epochs", [0, 1, 2])
def test_cosine_schedule_is_torchs_own_and_resumes_an_old_run(warmup_epochs):
    """SequentialLR(LinearLR, CosineAnnealingLR) gives the warm-up + cosine factors of the old
    hand-written LambdaLR at every step, and a resume point saved by that LambdaLR still resumes
    onto the same rates (its steps replayed)."""
    from train.fit import Progress, _build_scheduler, _restore

    tcfg = {"scheduler": "cosine", "warmup_epochs": warmup_epochs, "epochs": 4}
    steps, warmup, total = 5, 5 * warmup_epochs, 20

    def optimizer():
        return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)

    opt = optimizer()
    scheduler, per_step = _build_scheduler(opt, tcfg, steps)
    assert per_step
    rates = []
    for _ in range(total):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    assert rates == pytest.approx([0.1 * _old_cosine(s, warmup, total) for s in range(total)], abs=1e-9)

    old_opt = optimizer()  # a run started under the old LambdaLR, killed after 7 steps
    old = torch.optim.lr_scheduler.LambdaLR(old_opt, lambda s: _old_cosine(s, warmup, total))
    for _ in range(7):
        old_opt.step()
        old.step()
    state = {"optimizer": old_opt.state_dict(), "scheduler": old.state_dict(), "epoch": 1,
             "history": [{"epoch": 1, "train_steps": 7}]}
    new_opt = optimizer()
    new_scheduler, _ = _build_scheduler(new_opt, tcfg, steps)
    progress = _restore(state, new_opt, new_scheduler, Path("run"),
                        rebuild=lambda: _build_scheduler(new_opt, tcfg, steps)[0])
    assert isinstance(progress, Progress) and progress.start_epoch == 2 and progress.steps_done == 7
    assert new_opt.param_groups[0]["lr"] == pytest.approx(rates[7], abs=1e-9)
    for step in range(8, total):  # and the rest of the schedule follows
        new_opt.step()
        new_scheduler.step()
        assert new_opt.param_groups[0]["lr"] == pytest.approx(rates[step], abs=1e-9)
