"""ToyWorld: a small deterministic 2D world where an agent pushes an object onto a goal.

It is the embedded demo data and the closed-loop test bed for action models: every frame has a known
true action, and the agent's motion is plainly visible in the rendering, so a latent action model or an
inverse dynamics model trained on the frames can be checked against the truth.

Conventions: world coordinates are in [0, 1]^2 with x to the right and y *down*, matching image rows and
columns, so world point (x, y) falls on pixel column x * size and row y * size. The agent, the object
and the goal are discs for the physics; the object is drawn as a square block.

Two appearances render the same trajectories: "robot" (grey table, blue end effector, red block, green
target, fixed camera) and "human_hand" (wooden table, skin-coloured hand, blue block, white target,
slowly drifting camera). The layout and the expert's noise come from random streams that do not depend on
the appearance, so one seed gives the same motion in both, which pairs robot and human renderings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

APPEARANCES = ("robot", "human_hand")

MAX_SPEED = 0.05
AGENT_RADIUS = 0.055
OBJECT_RADIUS = 0.06
GOAL_RADIUS = 0.07
CONTACT_DISTANCE = AGENT_RADIUS + OBJECT_RADIUS

STATE_DIM = 6
ACTION_DIM = 2

_COORDS = "world coordinates in [0, 1]^2, x right and y down (image convention: row = y * size)"
ACTION_SLICES: list[dict[str, Any]] = [
    {
        "name": "agent_velocity",
        "start": 0,
        "stop": 2,
        "unit": "world_units_per_step",
        "description": (
            f"commanded agent displacement (dx, dy) in [-1, 1], scaled by {MAX_SPEED} world units per step; "
            f"{_COORDS}; action[t] is applied at state[t] and gives state[t+1]"
        ),
    }
]
STATE_SLICES: list[dict[str, Any]] = [
    {
        "name": "agent_pos",
        "start": 0,
        "stop": 2,
        "unit": "world_units",
        "description": f"agent (end effector or hand) disc centre (x, y), radius {AGENT_RADIUS}; {_COORDS}",
    },
    {
        "name": "object_pos",
        "start": 2,
        "stop": 4,
        "unit": "world_units",
        "description": f"pushed object centre (x, y), contact radius {OBJECT_RADIUS}; {_COORDS}",
    },
    {
        "name": "goal_pos",
        "start": 4,
        "stop": 6,
        "unit": "world_units",
        "description": (
            f"goal centre (x, y), fixed within an episode; success when the object centre is within "
            f"{GOAL_RADIUS} of it; {_COORDS}"
        ),
    },
]

# RGB colours, 0-255, and the names the language instruction uses for them.
_STYLES: dict[str, dict[str, Any]] = {
    "robot": {
        "table": (150.0, 150.0, 150.0),
        "agent": (40.0, 90.0, 220.0),
        "marker": (245.0, 245.0, 245.0),
        "object": (210.0, 40.0, 40.0),
        "object_name": "red",
        "goal": (70.0, 180.0, 80.0),
        "goal_rim": (30.0, 110.0, 40.0),
        "goal_name": "green",
    },
    "human_hand": {
        "table": (172.0, 120.0, 72.0),
        "agent": (232.0, 180.0, 146.0),
        "object": (45.0, 85.0, 200.0),
        "object_name": "blue",
        "goal": (240.0, 240.0, 232.0),
        "goal_rim": (120.0, 120.0, 120.0),
        "goal_name": "white",
    },
}

# Camera drift of the human appearance, as a fraction of the image size (0.03 is ~2 px at 64x64) and in
# cycles per step: slow enough to be smooth, well below the agent's 3 px/step top speed.
_JITTER_AMPLITUDE = 0.03
_JITTER_FREQUENCY = (0.01, 0.04)


def _streams(seed: int) -> tuple[np.random.SeedSequence, np.random.SeedSequence, np.random.SeedSequence]:
    """Independent (layout, policy, camera) seed streams, so that appearance never changes the motion."""
    layout, policy, camera = np.random.SeedSequence(seed).spawn(3)
    return layout, policy, camera


def _check_appearance(appearance: str) -> None:
    if appearance not in APPEARANCES:
        raise ValueError(f"unknown appearance {appearance!r}; expected one of {APPEARANCES}")


def _sample_layout(rng: np.random.Generator) -> np.ndarray:
    # The object starts away from the walls so that the expert can always get behind it, and the goal is
    # far enough away that success needs a real push.
    obj = rng.uniform(0.25, 0.75, size=2)
    while True:
        goal = rng.uniform(0.15, 0.85, size=2)
        if 0.25 <= np.linalg.norm(goal - obj) <= 0.55:
            break
    while True:
        agent = rng.uniform(0.1, 0.9, size=2)
        if np.linalg.norm(agent - obj) >= CONTACT_DISTANCE + 0.05:
            break
    return np.concatenate([agent, obj, goal]).astype(np.float32)


def _unit(v: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    n = float(np.hypot(v[0], v[1]))
    return v / n if n > 1e-9 else fallback


class ToyWorld:
    """One episode's world: the layout is fixed by ``seed``; ``appearance`` only changes the rendering."""

    def __init__(self, seed: int, appearance: str = "robot", image_size: int = 64) -> None:
        _check_appearance(appearance)
        if image_size < 16:
            raise ValueError(f"image_size must be at least 16, got {image_size}")
        self.seed = seed
        self.appearance = appearance
        self.image_size = image_size
        layout_seq, _, camera_seq = _streams(seed)
        self._initial_state = _sample_layout(np.random.default_rng(layout_seq))
        self._style = _STYLES[appearance]
        size = image_size
        self._pixel_centres = np.arange(size, dtype=np.float32) + 0.5
        if appearance == "human_hand":
            cam = np.random.default_rng(camera_seq)
            self._jitter_freq = cam.uniform(*_JITTER_FREQUENCY, size=(2, 2))
            self._jitter_phase = cam.uniform(0.0, 2.0 * np.pi, size=(2, 2))
            weight = cam.uniform(0.3, 0.7, size=2)
            self._jitter_weight = np.stack([weight, 1.0 - weight], axis=1) * (_JITTER_AMPLITUDE * size)
        else:
            self._table = np.empty((size, size, 3), dtype=np.float32)
            self._table[:] = self._style["table"]
        self.reset()

    def reset(self) -> np.ndarray:
        """Return to this seed's initial layout (always the same one) and rewind the camera drift."""
        self._state = self._initial_state.copy()
        self._t = 0
        return self._state.copy()

    def step(self, action: np.ndarray) -> np.ndarray:
        """Move the agent by ``clip(action, -1, 1) * MAX_SPEED``, push the object, return the new state."""
        action = np.asarray(action, dtype=np.float32)
        if action.shape != (ACTION_DIM,) or not np.all(np.isfinite(action)):
            raise ValueError(f"action must be {ACTION_DIM} finite numbers, got {action!r}")
        action = np.clip(action, -1.0, 1.0)
        s = self._state.astype(np.float64)
        agent, obj, goal = s[0:2], s[2:4], s[4:6]
        agent = np.clip(agent + action * MAX_SPEED, AGENT_RADIUS, 1.0 - AGENT_RADIUS)
        normal = _unit(obj - agent, _unit(action.astype(np.float64), np.array([1.0, 0.0])))
        if np.hypot(*(obj - agent)) < CONTACT_DISTANCE:
            # Pushing the object out along the contact normal is stable for any speed below the contact
            # distance, and needs no friction or mass model.
            obj = np.clip(agent + normal * CONTACT_DISTANCE, OBJECT_RADIUS, 1.0 - OBJECT_RADIUS)
            if np.hypot(*(obj - agent)) < CONTACT_DISTANCE:
                # The wall stopped the object: the agent cannot pass through it, so it is pushed back
                # (in a corner the final clip can leave an overlap of a few thousandths of a unit).
                normal = _unit(obj - agent, normal)
                agent = np.clip(obj - normal * CONTACT_DISTANCE, AGENT_RADIUS, 1.0 - AGENT_RADIUS)
        # Rounding to float32 every step means the exported float32 state is exactly what the next step
        # starts from, so replaying recorded actions reproduces recorded states bit for bit.
        self._state = np.concatenate([agent, obj, goal]).astype(np.float32)
        self._t += 1
        return self._state.copy()

    def success(self) -> bool:
        """Whether the object centre lies within GOAL_RADIUS of the goal centre."""
        s = self._state.astype(np.float64)
        return bool(np.hypot(*(s[2:4] - s[4:6])) <= GOAL_RADIUS)

    def language(self) -> str:
        """The instruction for this episode, naming the appearance's colours and where the goal is."""
        gx, gy = (float(v) for v in self._initial_state[4:6])
        horizontal = "left" if gx < 0.4 else "right" if gx > 0.6 else ""
        vertical = "top" if gy < 0.4 else "bottom" if gy > 0.6 else ""
        if horizontal and vertical:
            where = f"in the {vertical} {horizontal}"
        elif horizontal:
            where = f"on the {horizontal}"
        elif vertical:
            where = f"at the {vertical}"
        else:
            where = "in the middle"
        style = self._style
        return f"push the {style['object_name']} block to the {style['goal_name']} target {where}"

    def camera_offset(self) -> np.ndarray:
        """The view's translation in pixels (dx, dy) at the current step; zero for the robot appearance."""
        if self.appearance != "human_hand":
            return np.zeros(2)
        angle = 2.0 * np.pi * self._jitter_freq * self._t + self._jitter_phase
        return (self._jitter_weight * np.sin(angle)).sum(axis=1)

    def render(self) -> np.ndarray:
        """Draw the current state as a uint8 (image_size, image_size, 3) RGB image."""
        size = self.image_size
        offset = self.camera_offset()
        img = self._wood(offset) if self.appearance == "human_hand" else self._table.copy()
        s = self._state.astype(np.float64)
        agent, obj, goal = (s[i : i + 2] * size + offset for i in (0, 2, 4))
        style = self._style
        goal_r = GOAL_RADIUS * size
        self._disc(img, goal, goal_r, style["goal_rim"])
        self._disc(img, goal, goal_r - max(1.0, 0.12 * goal_r), style["goal"])
        self._box(img, obj, OBJECT_RADIUS * size * 0.9, style["object"])
        # The agent is drawn last so that it is never hidden: its motion is what action models must see.
        if self.appearance == "human_hand":
            self._hand(img, agent, AGENT_RADIUS * size, style["agent"])
        else:
            agent_r = AGENT_RADIUS * size
            self._disc(img, agent, agent_r, style["agent"])
            self._disc(img, agent, 0.4 * agent_r, style["marker"])
        return (img + 0.5).astype(np.uint8)

    def _wood(self, offset: np.ndarray) -> np.ndarray:
        # A fixed procedural texture in world coordinates (planks plus wavy grain), so that it moves with
        # the camera drift like a real table would.
        size = self.image_size
        x = ((self._pixel_centres - offset[0]) / size)[None, :]
        y = ((self._pixel_centres - offset[1]) / size)[:, None]
        grain = np.sin(
            2.0 * np.pi * (9.0 * x + 0.35 * np.sin(2.0 * np.pi * (1.3 * y + 0.4 * np.floor(4.0 * x))))
        )
        seam = np.abs(4.0 * x - np.round(4.0 * x)) * size / 4.0 < 0.6
        shade = 1.0 + 0.08 * grain - 0.25 * seam
        return (shade[..., None] * np.asarray(self._style["table"], dtype=np.float32)).astype(np.float32)

    def _patch(self, centre: np.ndarray, extent: float) -> tuple[slice, slice, np.ndarray, np.ndarray]:
        """The pixel window around ``centre`` that a shape of half-size ``extent`` can touch."""
        size = self.image_size
        x0, x1 = max(int(centre[0] - extent) - 1, 0), min(int(centre[0] + extent) + 2, size)
        y0, y1 = max(int(centre[1] - extent) - 1, 0), min(int(centre[1] + extent) + 2, size)
        xs = self._pixel_centres[None, x0:x1] - np.float32(centre[0])
        ys = self._pixel_centres[y0:y1, None] - np.float32(centre[1])
        return slice(y0, y1), slice(x0, x1), xs, ys

    @staticmethod
    def _paint(img: np.ndarray, rows: slice, cols: slice, distance: np.ndarray, colour: tuple) -> None:
        # ``distance`` is a signed distance in pixels (negative inside); a one-pixel ramp anti-aliases the
        # edge so that sub-pixel motion still changes the image.
        alpha = np.clip(0.5 - distance, 0.0, 1.0)[..., None]
        patch = img[rows, cols]
        patch += alpha * (np.asarray(colour, dtype=np.float32) - patch)

    def _disc(self, img: np.ndarray, centre: np.ndarray, radius: float, colour: tuple) -> None:
        rows, cols, xs, ys = self._patch(centre, radius)
        self._paint(img, rows, cols, np.sqrt(xs * xs + ys * ys) - radius, colour)

    def _box(self, img: np.ndarray, centre: np.ndarray, half: float, colour: tuple) -> None:
        rows, cols, xs, ys = self._patch(centre, half)
        self._paint(img, rows, cols, np.maximum(np.abs(xs), np.abs(ys)) - half, colour)

    def _hand(self, img: np.ndarray, centre: np.ndarray, radius: float, colour: tuple) -> None:
        # Palm disc (the contact disc) with four fingers pointing up and a thumb to the right; the
        # fingers are capsules around segments, in units of the palm radius.
        rows, cols, xs, ys = self._patch(centre, 1.9 * radius)
        u, v = xs / radius, ys / radius
        distance = np.sqrt(u * u + v * v) - 1.0
        fingers = (
            (-0.6, -0.5, -0.65, -1.45),
            (-0.2, -0.6, -0.22, -1.75),
            (0.2, -0.6, 0.22, -1.7),
            (0.6, -0.5, 0.65, -1.4),
            (0.7, -0.1, 1.45, -0.75),
        )
        width = max(0.24, 0.6 / radius)
        for ax, ay, bx, by in fingers:
            dx, dy = bx - ax, by - ay
            t = np.clip(((u - ax) * dx + (v - ay) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
            distance = np.minimum(distance, np.hypot(u - ax - t * dx, v - ay - t * dy) - width)
        self._paint(img, rows, cols, distance * radius, colour)


def scripted_expert(state: np.ndarray, rng: np.random.Generator, noise: float) -> np.ndarray:
    """Orbit to the point behind the object on the object->goal line, then push through to the goal.

    Gaussian noise of std ``noise`` is added to both components, and the result is clipped to [-1, 1].
    Exactly two normal draws are taken from ``rng`` per call, whatever the state, so trajectories stay
    reproducible.
    """
    s = np.asarray(state, dtype=np.float64)
    agent, obj, goal = s[0:2], s[2:4], s[4:6]
    to_goal = goal - obj
    distance = float(np.hypot(*to_goal))
    u = _unit(to_goal, np.array([1.0, 0.0]))
    perp = np.array([-u[1], u[0]])
    rel = agent - obj
    # Signed angle of the agent around the object, measured from the "behind" direction -u.
    phi = float(np.arctan2(rel @ perp, -(rel @ u)))
    if abs(phi) > 0.35:
        # Not behind yet: head for a point further round a circle that clears the object, so the agent
        # never knocks the object off the line while getting into position.
        orbit = CONTACT_DISTANCE + 0.04
        nxt = phi - np.sign(phi) * min(abs(phi), 0.6)
        behind_dir = -u * np.cos(nxt) + perp * np.sin(nxt)
        command = (obj + orbit * behind_dir - agent) / MAX_SPEED
    else:
        # Behind: push along the line, steering sideways to keep the contact normal pointing at the
        # goal, and slowing down so the object stops on the goal instead of overshooting it.
        lateral = float(rel @ perp)
        command = u * min(1.0, distance / MAX_SPEED) - perp * (lateral / MAX_SPEED)
    norm = float(np.hypot(*command))
    if norm > 1.0:
        command = command / norm
    action = command + rng.normal(0.0, noise, size=2)
    return np.clip(action, -1.0, 1.0).astype(np.float32)


@dataclass(frozen=True, eq=False)
class ToyEpisode:
    """One generated episode; frames[t] renders states[t], and actions[t] takes states[t] to states[t+1].

    The last action is the expert's action at the last state; its result is not part of the episode.
    ``eq=False`` because element-wise array equality has no single truth value; compare fields instead.
    """

    frames: np.ndarray
    actions: np.ndarray
    states: np.ndarray
    success: bool
    language: str
    appearance: str
    seed: int


def generate_episode(
    seed: int,
    appearance: str = "robot",
    image_size: int = 64,
    max_steps: int = 64,
    noise: float = 0.1,
    stop_on_success: bool = True,
) -> ToyEpisode:
    """Roll out the noisy scripted expert for at most ``max_steps`` frames.

    With ``stop_on_success`` the episode ends at the first state where the object is on the goal (that
    state is its last frame). The same arguments always give bit-identical arrays, and the states and
    actions do not depend on ``appearance``.
    """
    if max_steps < 1:
        raise ValueError(f"max_steps must be at least 1, got {max_steps}")
    if noise < 0:
        raise ValueError(f"noise must be non-negative, got {noise}")
    world = ToyWorld(seed, appearance, image_size)
    policy_rng = np.random.default_rng(_streams(seed)[1])
    frames, actions, states = [], [], []
    state = world.reset()
    for t in range(max_steps):
        frames.append(world.render())
        states.append(state)
        actions.append(scripted_expert(state, policy_rng, noise))
        if t == max_steps - 1 or (stop_on_success and world.success()):
            break
        state = world.step(actions[-1])
    return ToyEpisode(
        frames=np.stack(frames),
        actions=np.stack(actions),
        states=np.stack(states),
        success=world.success(),
        language=world.language(),
        appearance=appearance,
        seed=seed,
    )
