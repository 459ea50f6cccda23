"""``wamdata label apply``: side-car labels for every episode with provenance, the labeler fed the pixels its
training saw, a second run that does nothing, a killed run that resumes to the same bytes, the labels read back
through the stream, refused checkpoints."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import file_digests, kill_cli_when, small_demo_config
from wamdata.cli import main
from wamdata.format.labels import tar_name
from wamdata.format.reader import Dataset
from wamdata.format.shards import load_npy
from wamdata.format.validate import validate
from wamdata.ingest import ingest
from wamdata.labeling.actor import episode_frames, pooled_forward, read_tar
from wamdata.labeling.apply import LabelOptions, label_apply, select_episodes
from wamdata.labeling.checkpoint import LabelingError, labeler_id, load_checkpoint
from wamdata.labeling.config import IDMConfig, LAMConfig
from wamdata.labeling.heads import IdmHead, LamHead, pool_chunks
from wamdata.labeling.idm import InverseDynamicsModel
from wamdata.labeling.lam import LatentActionModel, lam_latents
from wamdata.labeling.windows import lam_windows, load_split
from wamdata.media.frames import resize_frames
from wamdata.stream import Normalizer, StreamConfig, WindowSpec, WindowStream
from wamdata.toy.demo import run_demo
from wamdata.train.checkpoint import save_model

pytestmark = pytest.mark.usefixtures("local_ray")

GR00T = "lerobot_gr00t_picknplace/robot_sim.PickNPlace"


def tiny_lam(folder: Path, **config: object) -> Path:
    """A random-init LAM: these tests are about the pipeline, not the model's quality."""
    torch.manual_seed(0)
    return save_model(LatentActionModel(LAMConfig(**{"image_size": 32, "channels": 8, "codebook_size": 8,
                                                          **config})).eval(), folder)


def tiny_idm(folder: Path, **config: object) -> Path:
    torch.manual_seed(0)
    defaults = {"action_dim": 2, "embodiment": "toy_pusher", "image_size": 32, "channels": 8, "hidden": 32, "chunk": 2}
    return save_model(InverseDynamicsModel(IDMConfig(**{**defaults, **config})).eval(), folder)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("checkpoints")
    return {"lam": tiny_lam(root / "lam"), "idm": tiny_idm(root / "idm")}


def data_shard_count(root: Path) -> int:
    """One side-car tar per data shard (of any source)."""
    return len(list((root / "shards").rglob("*.tar")))


@pytest.fixture(scope="module")
def labelled(demo_dataset: Path, checkpoints: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The toy dataset labelled by both checkpoints, uninterrupted: the bytes other runs must reproduce."""
    root = tmp_path_factory.mktemp("labelled") / "toy"
    shutil.copytree(demo_dataset, root)
    for kind in ("lam", "idm"):
        result = label_apply(root, checkpoints[kind], progress=False)
        assert result.labelled == result.selected == len(Dataset.open(root))
        assert result.tars_written == data_shard_count(root)
    return root


def side_car(root: Path, checkpoint: Path) -> Path:
    return root / "labels" / labeler_id(checkpoint)


def all_labels(folder: Path) -> dict[str, dict[str, np.ndarray]]:
    """episode id -> label name -> array, from every tar of a side-car."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for tar in sorted(folder.glob("*.tar")):
        for name, data in read_tar(tar).items():
            episode_id, label = name.removesuffix(".npy").split(".")
            out.setdefault(episode_id, {})[label] = load_npy(data)
    return out


def test_every_episode_gets_labels_with_provenance(labelled: Path, checkpoints: dict[str, Path]) -> None:
    dataset = Dataset.open(labelled)
    rows = {r["episode_id"]: r for r in dataset.episodes.to_pylist()}
    lam_id, idm_id = labeler_id(checkpoints["lam"]), labeler_id(checkpoints["idm"])
    lam, idm = all_labels(side_car(labelled, checkpoints["lam"])), all_labels(side_car(labelled, checkpoints["idm"]))
    assert lam.keys() == idm.keys() == rows.keys()
    for episode_id, row in rows.items():
        steps = row["num_steps"] - 1  # gap 0.1 s at 10 fps is one step; the IDM's last action has no next frame
        assert lam[episode_id]["latent_code"].shape == (steps, 1) and lam[episode_id]["latent_code"].dtype == np.int32
        assert lam[episode_id]["latent_embedding"].shape == (steps, 1, 16)
        assert idm[episode_id]["pseudo_action"].shape == (steps, 2)
        confidence = idm[episode_id]["pseudo_action_confidence"]
        assert confidence.shape == (steps,) and ((confidence > 0) & (confidence <= 1)).all()
        assert row["labels"] == sorted([lam_id, idm_id])
    # The labels are the model's: the same frames, resized as the trainer's stream did, through lam_latents.
    episode_id = next(iter(rows))
    frames = resize_frames(dataset.read_episode(episode_id).frames("front"), (32, 32))
    z_e, codes = lam_latents(load_checkpoint(checkpoints["lam"]), np.stack([frames[:-1], frames[1:]], axis=1))
    np.testing.assert_allclose(lam[episode_id]["latent_embedding"], z_e, rtol=1e-4, atol=1e-5)
    assert np.array_equal(lam[episode_id]["latent_code"], codes)
    for kind, names in (("lam", {"latent_code", "latent_embedding"}),
                        ("idm", {"pseudo_action", "pseudo_action_confidence"})):
        folder = side_car(labelled, checkpoints[kind])
        manifest = json.loads((folder / "labeler.json").read_text())
        assert manifest["complete"] and manifest["labeler"] == folder.name and manifest["model"] == kind
        assert manifest["checkpoint"]["config"] == json.loads((checkpoints[kind] / "config.json").read_text())
        assert set(manifest["labels"]) == names and set(manifest["episodes"]) == set(rows)
        assert {t: (e["sha256"], e["bytes"]) for t, e in manifest["tars"].items()} == {
            p.name: (file_digests(folder)[p.name], p.stat().st_size) for p in folder.glob("*.tar")}
        assert {tar_name(r["shard"]) for r in rows.values()} == set(manifest["tars"])
    assert validate(labelled, progress=False) == []


def test_a_second_run_does_nothing(labelled: Path, checkpoints: dict[str, Path],
                                   capsys: pytest.CaptureFixture) -> None:
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(labelled.rglob("*")) if p.is_file()}
    assert main(["-q", "label", "apply", str(labelled), "--model", str(checkpoints["lam"])]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(labelled.rglob("*")) if p.is_file()} == before


def test_only_unlabeled_labels_the_action_free_episodes_and_a_full_run_adds_the_rest(
        demo_dataset: Path, labelled: Path, checkpoints: dict[str, Path], tmp_path: Path) -> None:
    root = tmp_path / "toy"
    shutil.copytree(demo_dataset, root)
    assert main(["-q", "label", "apply", str(root), "--model", str(checkpoints["idm"]), "--only-unlabeled"]) == 0
    rows = Dataset.open(root).episodes.to_pylist()
    action_free = {r["episode_id"] for r in rows if not r["has_actions"]}
    folder = side_car(root, checkpoints["idm"])
    assert set(all_labels(folder)) == action_free and len(action_free) == 12
    assert {r["episode_id"] for r in rows if r["labels"]} == action_free
    result = label_apply(root, checkpoints["idm"], progress=False)
    human_shards = len({r["shard"] for r in rows if not r["has_actions"]})  # finished by the first run
    assert (result.labelled, result.tars_done_before) == (len(rows) - len(action_free), human_shards)
    assert file_digests(folder).keys() == file_digests(side_car(labelled, checkpoints["idm"])).keys()
    assert {k: v for k, v in file_digests(folder).items() if k.endswith(".tar")} == {
        k: v for k, v in file_digests(side_car(labelled, checkpoints["idm"])).items() if k.endswith(".tar")}


@pytest.fixture(scope="module")
def many_shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small demo dataset written with about one episode per shard: one actor labels it tar after tar."""
    config = small_demo_config()
    config["shard_bytes"], config["native_formats"] = 10_000, {}
    root = tmp_path_factory.mktemp("many_shards") / "toy"
    assert run_demo(config, out=root, progress=False).problems == []
    return root


def all_cpus_free(timeout: float = 120) -> None:
    """Wait until no actor holds a CPU of this module's Ray: a killed driver's actors are ended by Ray soon after
    it, and one still labelling would race the run that resumes its work."""
    import ray

    deadline = time.monotonic() + timeout
    while ray.available_resources().get("CPU", 0) < ray.cluster_resources()["CPU"]:
        assert time.monotonic() < deadline, "the killed run's actors were not ended"
        time.sleep(0.1)


def test_a_killed_run_resumes_to_the_same_bytes(many_shards: Path, checkpoints: dict[str, Path],
                                                tmp_path: Path) -> None:
    reference, root = tmp_path / "reference", tmp_path / "toy"
    shutil.copytree(many_shards, reference)
    shutil.copytree(many_shards, root)
    label_apply(reference, checkpoints["lam"], progress=False)
    total = data_shard_count(root)
    assert total >= 30
    folder = side_car(root, checkpoints["lam"])
    # One actor labels the shards one after the other: killed at the first tar, the run has most still to do.
    kill_cli_when(["label", "apply", str(root), "--model", str(checkpoints["lam"]), "--concurrency", "1"], folder,
                  "*.tar")
    all_cpus_free()
    finished = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.glob("*.tar")}
    assert 1 <= len(finished) < total
    assert not json.loads((folder / "labeler.json").read_text())["complete"]
    assert validate(root, progress=False)  # an unfinished side-car is a problem until the run is finished
    result = label_apply(root, checkpoints["lam"], progress=False)
    assert (result.tars_done_before, result.tars_written) == (len(finished), total - len(finished))
    # the finished tars were kept, not written again
    assert all(((folder / name).stat().st_ino, (folder / name).stat().st_mtime_ns) == kept
               for name, kept in finished.items())
    reference_folder = side_car(reference, checkpoints["lam"])
    assert {k: v for k, v in file_digests(folder).items() if k.endswith(".tar")} == {
        k: v for k, v in file_digests(reference_folder).items() if k.endswith(".tar")}

    def manifest(path: Path) -> dict:
        return {k: v for k, v in json.loads((path / "labeler.json").read_text()).items() if k != "created"}

    assert manifest(folder) == manifest(reference_folder)
    assert validate(root, progress=False) == []


def test_label_apply_feeds_a_labeler_the_pixels_its_training_saw(demo_dataset: Path,
                                                                 checkpoints: dict[str, Path]) -> None:
    """The training windows (read through the stream, resized by it) and label apply's inputs (decoded and
    resized by the actor) of the same episode, for each model, are the same bytes."""
    dataset = Dataset.open(demo_dataset)
    lam, idm = load_checkpoint(checkpoints["lam"]), load_checkpoint(checkpoints["idm"])
    size, k = lam.config.image_size, idm.config.chunk
    lam_train, _ = lam_windows([str(demo_dataset)], lam.config.gap_seconds, "train", size, None)
    idm_train = load_split([str(demo_dataset)], WindowSpec(horizon=k, action_horizon=k), "train", size, None,
                           with_actions=True)
    episodes = {e.episode_id: e for e in select_episodes(dataset, LabelOptions())[0]}
    robot, human = idm_train.episode_ids[0], lam_train.episode_ids[lam_train.sources == "toy_human"][0]
    idm_head = IdmHead(idm, Normalizer([dataset.info["stats"]], "bounds", ("action",)), mc_samples=1)
    for windows, head, episode_id in ((lam_train, LamHead(lam), human), (lam_train, LamHead(lam), robot),
                                      (idm_train, idm_head, robot)):
        episode = episodes[episode_id]
        frames = episode_frames(dataset, episode, size)
        assert frames.shape == (episode.num_steps, size, size, 3) and dataset.sources[episode.source].cameras[
            "front"].height == 64  # a real resize, from the stored 64 px
        mine = windows.episode_ids == episode_id
        trained = windows.frames[mine][np.argsort(windows.anchors[mine])]
        applied = head.inputs(frames, episode.fps)
        assert trained.shape == applied.shape and np.array_equal(trained, applied), (type(head).__name__, episode_id)


def test_the_stream_serves_the_labels(labelled: Path, checkpoints: dict[str, Path]) -> None:
    ids = [labeler_id(checkpoints[k]) for k in ("lam", "idm")]
    written = {i: all_labels(labelled / "labels" / i) for i in ids}
    horizon = 4
    config = StreamConfig(urls=(str(labelled),), batch_size=8, split=None, window=WindowSpec(action_horizon=horizon),
                          labels=tuple(ids))
    seen = set()
    for sample in WindowStream(config, rank=0, world_size=1):
        t, episode_id = int(sample["anchor"]), sample["episode_id"]
        for labeler in ids:
            for name, array in written[labeler][episode_id].items():
                expected = array[t: t + horizon]
                got, mask = sample[f"labels/{labeler}/{name}"], sample[f"labels/{labeler}/{name}_mask"]
                assert mask.tolist() == [True] * len(expected) + [False] * (horizon - len(expected))
                np.testing.assert_array_equal(got[: len(expected)], expected)
        seen.add((episode_id, t))
    assert len(seen) == sum(Dataset.open(labelled).episodes.column("num_steps").to_pylist())


def test_validate_checks_label_tars_against_their_manifest(labelled: Path, checkpoints: dict[str, Path],
                                                           tmp_path: Path) -> None:
    root = shutil.copytree(labelled, tmp_path / "toy")
    tar = side_car(root, checkpoints["lam"]) / "toy_robot-shard-000001.tar"
    data = bytearray(tar.read_bytes())
    data[600] ^= 1
    tar.write_bytes(bytes(data))
    missing = side_car(root, checkpoints["idm"]) / "toy_human-shard-000000.tar"
    missing.unlink()
    recorded = json.loads((tar.parent / "labeler.json").read_text())["tars"][tar.name]["sha256"]
    assert sorted(str(p) for p in validate(root, progress=False)) == sorted([
        f"{missing}: label tar listed in labeler.json is missing",
        f"{tar}: sha256 mismatch: expected {recorded}, got {file_digests(tar.parent)[tar.name]}"])


def test_checkpoints_that_do_not_fit_are_refused_naming_the_file(labelled: Path, checkpoints: dict[str, Path],
                                                                tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    missing = tmp_path / "nowhere"
    assert main(["-q", "label", "apply", str(labelled), "--model", str(missing)]) == 1
    assert f"{missing / 'config.json'}: missing" in capsys.readouterr().err
    garbled = shutil.copytree(checkpoints["lam"], tmp_path / "garbled")
    (garbled / "config.json").write_text("{not json")
    with pytest.raises(LabelingError, match=f"{garbled / 'config.json'}: not a LAM/IDM config"):
        label_apply(labelled, garbled)
    resized = shutil.copytree(checkpoints["lam"], tmp_path / "resized")
    config = json.loads((resized / "config.json").read_text())
    (resized / "config.json").write_text(json.dumps({**config, "channels": 16}))
    with pytest.raises(LabelingError, match=f"{resized / 'model.safetensors'}: these weights do not load"):
        label_apply(labelled, resized)
    with pytest.raises(LabelingError, match=f"{tmp_path / 'big' / 'config.json'}: image_size 128 is larger than "
                                            "camera 'front' of source 'toy_human' \\(64x64\\)"):
        label_apply(labelled, tiny_lam(tmp_path / "big", image_size=128))
    with pytest.raises(LabelingError, match=f"{tmp_path / 'hand' / 'config.json'}: the IDM predicts actions of "
                                            "embodiment 'human_hand', which has no action stats"):
        label_apply(labelled, tiny_idm(tmp_path / "hand", embodiment="human_hand"))
    with pytest.raises(LabelingError, match="predicts 3 action dims of 'toy_pusher', this dataset's 'toy_pusher' "
                                            "actions have 2"):
        label_apply(labelled, tiny_idm(tmp_path / "wide", action_dim=3))
    with pytest.raises(LabelingError, match="labeler.json: written with options"):
        label_apply(labelled, checkpoints["idm"], options=LabelOptions(mc_samples=2))


def test_confidence_is_lower_where_predictions_disagree() -> None:
    # 6 windows of 3-step chunks, 2 dropout samples: every prediction of step t is t, except that the
    # windows covering step 5 disagree about it.
    windows, samples, k = 6, 2, 3
    chunks = np.zeros((windows, samples, k, 2))
    for s in range(windows):
        chunks[s, :, :, :] = (s + np.arange(k))[None, :, None]
    chunks[3, 0, 2, :] += 0.8  # window 3, position 2 = step 5
    chunks[5, 1, 0, :] -= 0.8  # window 5, position 0 = step 5
    mean, confidence = pool_chunks(chunks)
    assert mean.shape == (windows + k - 1, 2) and confidence.shape == (windows + k - 1,)
    assert np.allclose(np.delete(mean, 5, axis=0)[:, 0], np.delete(np.arange(windows + k - 1), 5))
    assert confidence[5] < 0.8 and np.allclose(np.delete(confidence, 5), 1.0)
    one = pool_chunks(np.full((4, 1, 1, 2), 0.3))[1]
    assert np.allclose(one, 1.0)  # one prediction per step: no evidence of disagreement
    assert pool_chunks(np.zeros((0, 2, 3, 2)))[0].shape == (0, 2)


def test_pseudo_actions_are_in_the_datasets_raw_units(demo_dataset: Path) -> None:
    dataset = Dataset.open(demo_dataset)
    normalizer = Normalizer([dataset.info["stats"]], "bounds", ("action",))
    model = InverseDynamicsModel(IDMConfig(action_dim=2, embodiment="toy_pusher", chunk=1))
    head = IdmHead(model, normalizer, mc_samples=1)
    normalized = np.array([[[[-1.0, 1.0]]], [[[0.5, 0.0]]]])  # (windows, samples, k, A)
    stats = dataset.info["stats"]["by_embodiment"]["toy_pusher"]["action"]
    expected = [[stats["q01"][0], stats["q99"][1]], [0.75 * stats["q99"][0] + 0.25 * stats["q01"][0],
                                                     (stats["q01"][1] + stats["q99"][1]) / 2]]
    np.testing.assert_allclose(head.labels([normalized])["pseudo_action"], expected, rtol=1e-5)


def test_model_batches_are_pooled_across_episodes() -> None:
    sizes = [5, 0, 3, 9, 1]
    inputs = [(i, np.arange(n, dtype=float) + 100 * i) for i, n in enumerate(sizes)]
    batches: list[int] = []

    def forward(x: np.ndarray) -> list[np.ndarray]:
        batches.append(len(x))
        return [x * 2, x[:, None]]

    out = list(pooled_forward(inputs, forward, batch_size=4))
    assert [key for key, _ in out] == list(range(len(sizes))) and out[1][1] is None
    for (_, x), (_, outputs) in zip(inputs, out, strict=True):
        if len(x):
            assert np.array_equal(outputs[0], x * 2) and outputs[1].shape == (len(x), 1)
    assert batches == [4, 4, 4, 4, 2]  # full batches across episode boundaries, only the last partial


def test_labels_of_a_real_lerobot_dataset(real_data: Path, tmp_path: Path) -> None:
    root = tmp_path / "gr00t"
    with pytest.warns(UserWarning):
        ingest("lerobot", str(real_data / GR00T), root, progress=False)
    checkpoint = tiny_idm(tmp_path / "idm", embodiment="gr1armsonly", action_dim=44, image_size=64, chunk=1)
    result = label_apply(root, checkpoint, options=LabelOptions(mc_samples=2), progress=False)
    dataset = Dataset.open(root)
    assert (result.labelled, result.frames) == (5, 2096)
    labels = all_labels(side_car(root, checkpoint))
    stats = dataset.info["stats"]["by_embodiment"]["gr1armsonly"]["action"]
    for row in dataset.episodes.to_pylist():
        action = labels[row["episode_id"]]["pseudo_action"]
        assert action.shape == (row["num_steps"] - 1, 44) and np.isfinite(action).all()
        # An untrained IDM predicts near 0 in normalized units: the middle of each dimension's q01..q99.
        middle, half = (np.array(stats["q99"]) + stats["q01"]) / 2, (np.array(stats["q99"]) - stats["q01"]) / 2
        assert (np.abs(action - middle) <= 2 * half + 1e-6).all()
        assert row["labels"] == [result.labeler]
    assert validate(root, progress=False) == []
