"""``wamdata label eval``: a LAM and/or an IDM against the true actions of held-out episodes.

Probes are fit on the train split's episodes with actions and scored on the val split's, so every number
is held out. Baselines in the same run: the mean train action, and the same probe on raw frame differences.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from wamdata.labeling.idm import InverseDynamicsModel, idm_predict
from wamdata.labeling.lam import LatentActionModel, lam_latents
from wamdata.labeling.quality import codebook_usage, one_hot, probe_r2, r2_score
from wamdata.labeling.windows import Windows, gap_steps, load_split
from wamdata.stream import WindowSpec

FRAME_DIFF_STRIDE = 4  # the baseline's frame differences are subsampled 4x per side: a probe on every pixel overfits
# Frame differences have far more features than a debug split has windows: with the latent probe's tiny
# penalty the fit interpolates the train set (held-out R2 of -600 on 500 windows), so the baseline gets a
# strong one.
FRAME_DIFF_L2 = 1.0


def _action_windows(urls: Sequence[str], spec: WindowSpec, image_size: int, embodiment: str | None,
                    max_windows: int | None, holdout_every: int | None) -> tuple[Windows, Windows, int]:
    """Train and val windows with actions of one embodiment, and that embodiment's real action width."""
    train, val = (load_split(urls, spec, split, image_size, holdout_every, with_actions=True,
                             max_windows=max_windows) for split in ("train", "val"))
    if embodiment is not None:
        train, val = train.select(train.embodiments == embodiment), val.select(val.embodiments == embodiment)
    if not len(train) or not len(val):
        raise ValueError(f"no train and val windows with actions{' for ' + embodiment if embodiment else ''}")
    if len(set(train.embodiments)) > 1:
        raise ValueError(f"actions of several embodiments {sorted(set(train.embodiments))}: pass --embodiment")
    width = int(train.action_mask[:, 0].all(axis=0).sum())
    return train, val, width


def frame_differences(frames: np.ndarray) -> np.ndarray:
    """(N, F, H, W, 3) uint8 -> consecutive differences, subsampled, flattened: the raw-pixel baseline."""
    f = frames[:, :, ::FRAME_DIFF_STRIDE, ::FRAME_DIFF_STRIDE].astype(np.float32) / 255
    return (f[:, 1:] - f[:, :-1]).reshape(len(f), -1)


def baselines(train: Windows, val: Windows, width: int) -> dict[str, float]:
    y_train, y_val = train.actions[..., :width], val.actions[..., :width]
    mean = np.broadcast_to(y_train.mean(axis=0), y_val.shape)
    return {"mean_action_r2": r2_score(mean, y_val),
            "frame_diff_probe_r2": probe_r2(frame_differences(train.frames), y_train,
                                            frame_differences(val.frames), y_val, l2=FRAME_DIFF_L2)}


def evaluate_lam(model: LatentActionModel, urls: Sequence[str], embodiment: str | None = None,
                 max_windows: int | None = None, holdout_every: int | None = None) -> dict[str, Any]:
    config = model.config
    gap = gap_steps(urls, config.gap_seconds)
    # The latent explains the change from t to t+gap: the probe's target is the whole chunk a[t : t+gap].
    spec = WindowSpec(horizon=1, frame_stride=gap, action_horizon=gap)
    train, val, width = _action_windows(urls, spec, config.image_size, embodiment, max_windows, holdout_every)
    (z_train, c_train), (z_val, c_val) = lam_latents(model, train.frames), lam_latents(model, val.frames)
    y_train, y_val = train.actions[..., :width], val.actions[..., :width]
    k = config.codebook_size
    return {"model": "lam", "gap_steps": gap, "train_windows": len(train), "val_windows": len(val),
            "embedding_probe_r2": probe_r2(z_train, y_train, z_val, y_val),
            "code_probe_r2": probe_r2(one_hot(c_train, k), y_train, one_hot(c_val, k), y_val),
            **codebook_usage(c_val, k), "codebook_size": k, **baselines(train, val, width)}


def evaluate_idm(model: InverseDynamicsModel, urls: Sequence[str], max_windows: int | None = None,
                 holdout_every: int | None = None) -> dict[str, Any]:
    config = model.config
    spec = WindowSpec(horizon=config.chunk, action_horizon=config.chunk)
    train, val, width = _action_windows(urls, spec, config.image_size, config.embodiment, max_windows,
                                       holdout_every)
    if width != config.action_dim:
        raise ValueError(f"{config.embodiment} actions have {width} dims here, the IDM predicts {config.action_dim}")
    prediction, y_val = idm_predict(model, val.frames), val.actions[..., :width]
    return {"model": "idm", "embodiment": config.embodiment, "train_windows": len(train), "val_windows": len(val),
            "idm_r2": r2_score(prediction, y_val), "idm_mse": float(((prediction - y_val) ** 2).mean()),
            **baselines(train, val, width)}


def format_quality(result: dict[str, Any]) -> str:
    """One result of ``evaluate_lam`` / ``evaluate_idm`` as the table ``wamdata label eval`` prints."""
    name = result.get("checkpoint", result["model"])
    lines = [f"{name} ({result['model']}, {result['val_windows']} held-out windows)"]
    lines += [f"  {key:22s} {value:8.4f}" for key, value in result.items() if isinstance(value, float)]
    return "\n".join(lines)
