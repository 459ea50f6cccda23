"""The one training loop and its checkpoints: the schedule, gradient accumulation, the optimizer state through
safetensors + JSON, saves that a kill cannot half-write, and a killed ``wamdata label train-*`` that resumes to
the losses and weights of an uninterrupted run."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import free_loopback_port
from wamdata.cli import main
from wamdata.labeling.config import IDMConfig
from wamdata.labeling.idm import idm_predict, train_idm
from wamdata.train.checkpoint import (
    TRAINER,
    CheckpointError,
    join_optimizer_state,
    load_training,
    split_optimizer_state,
    staging_folder,
)
from wamdata.train.config import TrainConfig
from wamdata.train.loop import learning_rate
from wamdata.train.runtime import Runtime

CPU = Runtime(torch.device("cpu"))
# One thread per process: every run of a comparison then adds up its floats in the same order.
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def test_learning_rate_warms_up_then_holds_or_decays() -> None:
    constant = TrainConfig(steps=100, lr=1e-3, warmup_steps=10)
    assert [learning_rate(s, constant) for s in (1, 5, 10, 11, 100)] == pytest.approx([1e-4, 5e-4, 1e-3, 1e-3, 1e-3])
    cosine = replace(constant, decay="cosine", min_lr_fraction=0.1)
    assert learning_rate(10, cosine) == pytest.approx(1e-3)
    assert learning_rate(55, cosine) == pytest.approx(0.55e-3)  # half way: the mean of lr and the floor
    assert learning_rate(100, cosine) == pytest.approx(1e-4)
    rates = [learning_rate(s, cosine) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(rates, rates[1:], strict=False))
    assert learning_rate(1, TrainConfig(steps=5)) == 1e-3  # no warm-up


def test_optimizer_state_round_trips_through_tensors_and_json() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.GELU(), torch.nn.Linear(8, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.8, 0.9))
    for _ in range(3):
        model(torch.randn(16, 4)).square().mean().backward()
        optimizer.step()
        optimizer.zero_grad()
    tensors, rest = split_optimizer_state(optimizer.state_dict())
    restored = torch.optim.AdamW(model.parameters(), lr=1.0)
    restored.load_state_dict(join_optimizer_state(tensors, json.loads(json.dumps(rest))))
    before, after = optimizer.state_dict(), restored.state_dict()
    assert after["param_groups"][0]["betas"] == [0.8, 0.9] and after["param_groups"][0]["lr"] == 1e-2
    assert before["state"].keys() == after["state"].keys() == {0, 1, 2, 3}
    for index, values in before["state"].items():
        for name, value in values.items():
            assert torch.equal(value, after["state"][index][name]), (index, name)


def toy_windows(count: int = 96, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """IDM windows whose action is the brightness change between the two frames."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 200, (count, 2, 32, 32, 3), dtype=np.uint8)
    change = rng.integers(0, 50, count)
    frames[:, 1] = frames[:, 0] + change[:, None, None, None].astype(np.uint8)
    return frames, (change / 25 - 1).astype(np.float32)[:, None, None]


def test_accumulated_micro_batches_take_the_step_of_the_whole_batch() -> None:
    frames, actions = toy_windows()
    config = IDMConfig(action_dim=1, embodiment="toy", channels=8, hidden=16, dropout=0.0, random_shift=0)
    training = TrainConfig(steps=3, batch_size=32, lr=1e-2)
    # The source draws 2 x 16 indices from its generator as it draws 32 at once: the same windows. (Compared by
    # the predictions: AdamW's first steps move each weight by about lr times the sign of its gradient, so the
    # float noise of gradients that are zero in theory, such as a bias before a GroupNorm, moves weights that
    # the output does not depend on.)
    whole = idm_predict(train_idm(config, training, frames, actions, runtime=CPU), frames)
    accumulated = train_idm(config, replace(training, batch_size=16, grad_accumulation=2), frames, actions, runtime=CPU)
    np.testing.assert_allclose(idm_predict(accumulated, frames), whole, atol=1e-5)
    half = train_idm(config, replace(training, batch_size=16), frames, actions, runtime=CPU)
    assert np.abs(idm_predict(half, frames) - whole).max() > 0.01  # what the test tells apart


def test_a_killed_save_leaves_the_previous_checkpoint(tmp_path: Path) -> None:
    frames, actions = toy_windows()
    config = IDMConfig(action_dim=1, embodiment="toy", channels=8, hidden=16)
    out = tmp_path / "idm"
    training = TrainConfig(steps=4, batch_size=8, save_every=2)
    train_idm(config, training, frames, actions, runtime=CPU, out=out)
    run = {"model": config.to_json(), "training": training.identity(), "world_size": 1}
    finished = json.loads((out / TRAINER).read_text())
    # A save killed while writing: a staging folder without trainer.json beside the checkpoint.
    staging = staging_folder(out)
    staging.mkdir()
    (staging / "model.safetensors").write_bytes(b"half")
    assert load_training(out, run, CPU).step == finished["step"] == 4
    # A save killed between replace_folder's two renames: no checkpoint folder, the complete new one beside it.
    shutil.rmtree(staging)
    os.replace(out, staging)
    assert load_training(out, run, CPU).step == 4 and (out / TRAINER).is_file() and not staging.exists()


def test_checkpoints_of_another_run_or_other_files_are_refused_naming_them(tmp_path: Path) -> None:
    frames, actions = toy_windows()
    config = IDMConfig(action_dim=1, embodiment="toy", channels=8, hidden=16)
    out, training = tmp_path / "idm", TrainConfig(steps=2, batch_size=8)
    train_idm(config, training, frames, actions, runtime=CPU, out=out)
    with pytest.raises(CheckpointError, match=f"{out / TRAINER}: saved by a run with other options "
                                              r"\(training.lr: saved 0.001, now 0.002\)"):
        train_idm(config, replace(training, lr=2e-3), frames, actions, runtime=CPU, out=out)
    with pytest.raises(CheckpointError, match=r"rank-00000.json: saved while drawing from other windows"):
        train_idm(config, training, frames[::-1].copy(), actions, runtime=CPU, out=out)
    # log_every and save_every change what a run reports, not what it computes: a resume may change them
    train_idm(config, replace(training, log_every=1, save_every=1), frames, actions, runtime=CPU, out=out)
    (out / TRAINER).write_text("{broken")
    with pytest.raises(CheckpointError, match=f"{out / TRAINER}: cannot resume from it: JSONDecodeError"):
        train_idm(config, training, frames, actions, runtime=CPU, out=out)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(CheckpointError, match=f"{other}: holds files but no {TRAINER}"):
        train_idm(config, training, frames, actions, runtime=CPU, out=other)
    assert (other / "notes.txt").read_text() == "mine"


def test_the_cli_refuses_to_resume_another_run_naming_the_file(demo_dataset: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "idm"
    args = ["label", "train-idm", str(demo_dataset), "--embodiment", "toy_pusher", "--out", str(out), "--steps", "4"]
    assert main(args) == 0
    assert main([*args, "--set", "hidden=64"]) == 1
    assert (f"wamdata label train-idm: error: {out / TRAINER}: saved by a run with other options (model.hidden: saved "
            "256, now 64)") in capsys.readouterr().err
    assert main([*args, "--set", "hiden=64"]) == 1
    assert "label train-idm: unknown option 'hiden' (did you mean 'hidden'?)" in capsys.readouterr().err


def wamdata(args: list[str], torchrun: int = 0) -> list[str]:
    if not torchrun:
        return [sys.executable, "-m", "wamdata.cli", *args]
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", str(torchrun),
            "--master-addr", "127.0.0.1", "--master-port", str(free_loopback_port()), "-m", "wamdata.cli", *args]


def run(command: list[str]) -> str:
    done = subprocess.run(command, env={**ENV, "GLOO_SOCKET_IFNAME": "lo"}, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=600)
    assert done.returncode == 0, done.stdout
    return done.stdout


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, from /proc (torchrun starts each rank in a session of its own)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):  # a process that ended meanwhile
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        below = children.get(todo.pop(), [])
        found += below
        todo += below
    return found


def kill_after_first_checkpoint(command: list[str], out: Path) -> None:
    """Start ``command`` and SIGKILL it and every process it started (torchrun's ranks), as a machine that
    loses power would, once ``out`` holds a checkpoint."""
    process = subprocess.Popen(command, env={**ENV, "GLOO_SOCKET_IFNAME": "lo"}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (out / TRAINER).is_file():
        assert process.poll() is None, "the training ended before a checkpoint appeared"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    for pid in [process.pid, *descendants(process.pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait(timeout=30)


def resumed_step(output: str, out: Path, steps: int) -> int:
    """The step a run says it resumed from (the kill may have landed in a later save, even between its renames)."""
    prefix = f"{out}: resuming from step "
    (line,) = [line for line in output.splitlines() if line.startswith(prefix)]
    step = int(line.removeprefix(prefix).split()[0])
    assert line == f"{prefix}{step} of {steps}" and 0 < step < steps, "killed mid-run, after a checkpoint"
    return step


def trajectory(out: Path) -> list[dict[str, float]]:
    """The log of a checkpoint, but for the wall time."""
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
            for line in (out / "log.jsonl").read_text().splitlines()]


COMMANDS = {
    # 60 steps, a checkpoint every 20: the LAM's quantizer starts (k-means) at step 31, after the first one
    "lam": ["label", "train-lam", "{data}", "--out", "{out}", "--steps", "60", "--codebook-size", "8"],
    # dropout and the random shift draw from torch's generator, the batches from numpy's
    "idm": ["label", "train-idm", "{data}", "--embodiment", "toy_pusher", "--out", "{out}", "--steps", "60"],
}


@pytest.mark.parametrize("kind", ["lam", "idm"])
def test_a_killed_training_resumes_to_the_uninterrupted_losses_and_weights(kind: str, demo_dataset: Path,
                                                                           tmp_path: Path) -> None:
    def command(out: Path) -> list[str]:
        args = [a.format(data=demo_dataset, out=out) for a in COMMANDS[kind]]
        return wamdata([*args, "--save-every", "20", "--log-every", "1"])

    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    run(command(reference))
    kill_after_first_checkpoint(command(resumed), resumed)
    output = run(command(resumed))
    saved = resumed_step(output, resumed, 60)
    steps = [int(line.split()[1]) for line in output.splitlines() if line.startswith("step ")]
    assert steps == list(range(saved + 1, 61)), "the second run trained only the steps after the checkpoint"
    assert trajectory(resumed) == trajectory(reference)  # every step's loss and metrics, to the last bit
    for name in ("model.safetensors", "config.json", "optimizer.safetensors"):
        assert (resumed / name).read_bytes() == (reference / name).read_bytes(), name
    # the same command once more: nothing left to train
    assert f"{resumed}: already trained (60 steps)" in run(command(resumed))


def test_a_killed_ddp_training_resumes_on_every_rank(demo_dataset: Path, tmp_path: Path) -> None:
    def command(out: Path) -> list[str]:
        return wamdata(["label", "train-idm", str(demo_dataset), "--embodiment", "toy_pusher", "--out", str(out),
                        "--steps", "40", "--save-every", "10", "--log-every", "1", "--grad-accumulation", "2",
                        "--batch-size", "32"], torchrun=2)

    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    run(command(reference))
    assert sorted(p.name for p in reference.glob("rank-*")) == [
        "rank-00000.json", "rank-00000.safetensors", "rank-00001.json", "rank-00001.safetensors"]
    kill_after_first_checkpoint(command(resumed), resumed)
    resumed_step(run(command(resumed)), resumed, 40)
    assert trajectory(resumed) == trajectory(reference)
    assert (resumed / "model.safetensors").read_bytes() == (reference / "model.safetensors").read_bytes()
