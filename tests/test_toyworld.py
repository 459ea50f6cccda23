"""ToyWorld: determinism, shared trajectories across appearances, dynamics replay, expert quality and
visible agent motion."""

from __future__ import annotations

import numpy as np
import pytest

from wamdata.toy.world import (
    ACTION_DIM,
    ACTION_SLICES,
    AGENT_RADIUS,
    APPEARANCES,
    CONTACT_DISTANCE,
    GOAL_RADIUS,
    MAX_SPEED,
    OBJECT_RADIUS,
    STATE_DIM,
    STATE_SLICES,
    ToyWorld,
    generate_episode,
    scripted_expert,
)

SEEDS = range(50)


def _agent_centroid(frame: np.ndarray) -> np.ndarray:
    """Centroid (x, y) in pixel-index coordinates of the robot's blue end effector, found by colour."""
    rgb = frame.astype(np.float64)
    blueness = np.clip(rgb[..., 2] - np.maximum(rgb[..., 0], rgb[..., 1]), 0.0, None)
    rows, cols = np.indices(blueness.shape)
    total = blueness.sum()
    return np.array([(blueness * cols).sum() / total, (blueness * rows).sum() / total])


def test_slices_describe_the_vectors() -> None:
    for slices, dim in ((STATE_SLICES, STATE_DIM), (ACTION_SLICES, ACTION_DIM)):
        assert slices[0]["start"] == 0 and slices[-1]["stop"] == dim
        for before, after in zip(slices, slices[1:], strict=False):
            assert before["stop"] == after["start"]
        for s in slices:
            assert set(s) <= {"name", "start", "stop", "unit", "description"}
            assert "y down" in s["description"]
    assert [s["name"] for s in STATE_SLICES] == ["agent_pos", "object_pos", "goal_pos"]


@pytest.mark.parametrize("appearance", APPEARANCES)
def test_generation_is_bitwise_deterministic(appearance: str) -> None:
    a = generate_episode(7, appearance)
    b = generate_episode(7, appearance)
    for name in ("frames", "actions", "states"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()
    assert (a.success, a.language, a.seed, a.appearance) == (b.success, b.language, b.seed, b.appearance)
    assert generate_episode(8, appearance).states.tobytes() != a.states.tobytes()


def test_trajectory_is_shared_across_appearances_while_frames_differ() -> None:
    for seed in range(5):
        robot = generate_episode(seed, "robot")
        human = generate_episode(seed, "human_hand")
        assert robot.states.tobytes() == human.states.tobytes()
        assert robot.actions.tobytes() == human.actions.tobytes()
        assert robot.success == human.success
        assert robot.frames.shape == human.frames.shape
        # Every frame differs, and substantially: not just a colour tweak of a few pixels.
        per_frame = np.abs(robot.frames.astype(int) - human.frames.astype(int)).mean(axis=(1, 2, 3))
        assert per_frame.min() > 10.0
        assert "red" in robot.language and "green" in robot.language
        assert "blue" in human.language and "white" in human.language


@pytest.mark.parametrize("appearance", APPEARANCES)
def test_shapes_dtypes_and_action_range(appearance: str) -> None:
    ep = generate_episode(3, appearance, max_steps=40, noise=0.5, stop_on_success=False)
    assert ep.frames.dtype == np.uint8 and ep.frames.shape == (40, 64, 64, 3)
    assert ep.actions.dtype == np.float32 and ep.actions.shape == (40, ACTION_DIM)
    assert ep.states.dtype == np.float32 and ep.states.shape == (40, STATE_DIM)
    assert np.all(np.abs(ep.actions) <= 1.0)
    # Noise 0.5 must actually hit the clip, or the range check above proves nothing.
    assert np.any(np.abs(ep.actions) == 1.0)
    assert ep.appearance == appearance and ep.seed == 3 and isinstance(ep.success, bool)


@pytest.mark.parametrize("appearance", APPEARANCES)
def test_replaying_actions_reproduces_states_and_frames(appearance: str) -> None:
    for seed in range(5):
        ep = generate_episode(seed, appearance, noise=0.3, stop_on_success=False)
        world = ToyWorld(seed, appearance)
        state = world.reset()
        assert state.tobytes() == ep.states[0].tobytes()
        for t in range(len(ep.states)):
            assert world.render().tobytes() == ep.frames[t].tobytes(), f"frame {t}"
            if t + 1 < len(ep.states):
                state = world.step(ep.actions[t])
                assert state.tobytes() == ep.states[t + 1].tobytes(), f"state {t + 1}"


def test_stop_on_success_ends_at_the_first_success() -> None:
    for seed in range(10):
        ep = generate_episode(seed)
        if not ep.success:
            continue
        dist = np.hypot(*(ep.states[:, 2:4] - ep.states[:, 4:6]).T)
        assert dist[-1] <= GOAL_RADIUS
        assert np.all(dist[:-1] > GOAL_RADIUS)
    full = generate_episode(0, max_steps=30, stop_on_success=False)
    assert len(full.frames) == 30


def test_dynamics_respect_speed_contact_and_walls() -> None:
    rng = np.random.default_rng(0)
    for seed in range(20):
        world = ToyWorld(seed)
        state = world.reset()
        for _ in range(200):
            # Mostly saturated actions drive the agent into walls and corners with the object.
            action = rng.choice([-3.0, -1.0, 0.0, 1.0, 3.0], size=2).astype(np.float32)
            new = world.step(action)
            agent, obj = new[0:2].astype(np.float64), new[2:4].astype(np.float64)
            assert np.all(agent >= AGENT_RADIUS - 1e-6) and np.all(agent <= 1 - AGENT_RADIUS + 1e-6)
            assert np.all(obj >= OBJECT_RADIUS - 1e-6) and np.all(obj <= 1 - OBJECT_RADIUS + 1e-6)
            assert np.hypot(*(agent - obj)) >= CONTACT_DISTANCE - 5e-3
            prev = state[0:2].astype(np.float64)
            if new[2:4].tobytes() == state[2:4].tobytes():
                # No push: the agent moved exactly as commanded, up to the walls.
                free = np.clip(prev + np.clip(action, -1, 1) * MAX_SPEED, AGENT_RADIUS, 1 - AGENT_RADIUS)
                if np.hypot(*(free - obj)) >= CONTACT_DISTANCE:
                    np.testing.assert_allclose(agent, free, atol=1e-6)
            # Against a blocked object the agent is put back on the contact circle: at most one more step.
            assert np.hypot(*(agent - prev)) <= 2 * np.sqrt(2) * MAX_SPEED + 1e-6
            assert new[4:6].tobytes() == state[4:6].tobytes()
            state = new


def test_action_is_clipped_and_validated() -> None:
    world = ToyWorld(0)
    start = world.reset()
    agent = start[0:2].astype(np.float64)
    # Step away from the nearest walls so the clip of the action, not the wall, limits the motion.
    direction = np.where(agent < 0.5, 1.0, -1.0)
    moved = world.step((direction * 10.0).astype(np.float32))
    np.testing.assert_allclose(np.abs(moved[0:2] - start[0:2]), MAX_SPEED, atol=1e-6)
    with pytest.raises(ValueError):
        world.step(np.zeros(3, dtype=np.float32))
    with pytest.raises(ValueError):
        world.step(np.array([np.nan, 0.0], dtype=np.float32))


def test_expert_succeeds_and_random_policy_does_not() -> None:
    expert = np.mean([generate_episode(seed).success for seed in SEEDS])
    # Measured 1.0 over 200 seeds at noise 0.1 (mean episode length 18 steps); leave some margin.
    assert expert >= 0.9, expert

    rng = np.random.default_rng(123)
    random_successes = 0
    for seed in SEEDS:
        world = ToyWorld(seed)
        world.reset()
        for _ in range(64):
            world.step(rng.uniform(-1.0, 1.0, size=2).astype(np.float32))
            if world.success():
                random_successes += 1
                break
    assert random_successes / len(SEEDS) <= 0.1
    assert expert - random_successes / len(SEEDS) >= 0.8


def test_expert_noise_is_reproducible_and_bounded() -> None:
    state = ToyWorld(4).reset()
    a = scripted_expert(state, np.random.default_rng(1), 0.1)
    b = scripted_expert(state, np.random.default_rng(1), 0.1)
    assert a.dtype == np.float32 and a.shape == (2,) and a.tobytes() == b.tobytes()
    clean = scripted_expert(state, np.random.default_rng(1), 0.0)
    assert not np.array_equal(a, clean)
    assert np.all(np.abs(scripted_expert(state, np.random.default_rng(2), 5.0)) <= 1.0)


@pytest.mark.parametrize("image_size", [64, 96])
def test_agent_motion_is_visible_and_tracked_by_its_colour(image_size: int) -> None:
    for seed in range(5):
        ep = generate_episode(seed, "robot", image_size=image_size, stop_on_success=False)
        for t in range(len(ep.frames)):
            centroid = _agent_centroid(ep.frames[t])
            # Pixel i covers world [i, i + 1) / size, so the world point p lies at index p * size - 0.5.
            expected = ep.states[t, 0:2].astype(np.float64) * image_size - 0.5
            assert np.abs(centroid - expected).max() <= 0.5, (seed, t, centroid, expected)
        for t in range(len(ep.frames) - 1):
            step_px = np.abs(ep.states[t + 1, 0:2] - ep.states[t, 0:2]).max() * image_size
            if step_px < 0.5:
                continue
            # The agent's moving footprint must show up in the pixels around it.
            cx, cy = (ep.states[t, 0:2] * image_size).astype(int)
            r = int(AGENT_RADIUS * image_size) + 3
            window = (slice(max(cy - r, 0), cy + r), slice(max(cx - r, 0), cx + r))
            diff = np.abs(ep.frames[t + 1][window].astype(int) - ep.frames[t][window].astype(int))
            assert diff.max() >= 50, (seed, t)


def test_image_size_96_works_for_both_appearances() -> None:
    for appearance in APPEARANCES:
        ep = generate_episode(2, appearance, image_size=96)
        assert ep.frames.shape[1:] == (96, 96, 3) and ep.frames.dtype == np.uint8
        assert ep.states.tobytes() == generate_episode(2, appearance).states.tobytes()


def test_human_camera_drifts_smoothly_and_robot_camera_is_still() -> None:
    for seed in range(5):
        world = ToyWorld(seed, "human_hand")
        world.reset()
        offsets = []
        for _ in range(64):
            offsets.append(world.camera_offset())
            world.step(np.zeros(2, dtype=np.float32))
        offsets = np.array(offsets)
        assert np.abs(offsets).max() <= 0.03 * 64 + 1e-9
        assert np.ptp(offsets, axis=0).max() >= 0.5
        assert np.abs(np.diff(offsets, axis=0)).max() < 1.0
    robot = ToyWorld(0, "robot")
    robot.step(np.ones(2, dtype=np.float32))
    assert not robot.camera_offset().any()


def test_unknown_appearance_is_rejected_by_name() -> None:
    with pytest.raises(ValueError, match="claymation"):
        ToyWorld(0, "claymation")
    with pytest.raises(ValueError, match="claymation"):
        generate_episode(0, "claymation")


def test_language_names_the_goal_side() -> None:
    seen = set()
    for seed in range(30):
        world = ToyWorld(seed)
        gx, gy = world.reset()[4:6]
        text = world.language()
        assert text == generate_episode(seed, max_steps=1).language
        if gx < 0.4:
            assert "left" in text
        if gx > 0.6:
            assert "right" in text
        if gy < 0.4:
            assert "top" in text
        if gy > 0.6:
            assert "bottom" in text
        seen.add(text)
    assert len(seen) >= 4
