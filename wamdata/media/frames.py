"""The one resize: every frame that changes size in wamdata (a source's clips, an HDF5 camera, the stream's
windows, a labeler's inputs) goes through ``resize_frames``, so the same frame gives the same pixels
whatever container it came from and whichever stage asks.

The filter is Pillow's BOX (each output pixel is the area-weighted mean of the input pixels it covers),
in uint8. Area averaging is the usual choice for shrinking camera frames (no aliasing, no ringing), and
Pillow's integer arithmetic gives the same bytes on every CPU, which deterministic shards need (swscale's
SIMD paths differ between CPUs, and it scales RGB input through an internal YUV conversion: up to 6 levels
off an exact area mean, measured on a 1080p camera frame shrunk to 456x256). ``fit_frame`` first center-crops or pads a
frame to the target aspect ratio, so videos of several sizes and orientations share one frame size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

FITS = ("crop", "pad")


def resize_image(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """One uint8 RGB image (h, w, 3) resized to (height, width, 3); returned as is when already that size."""
    if rgb.shape[:2] == (height, width):
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((width, height), Image.Resampling.BOX))


def resize_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 frames (..., h, w, 3) resized to (..., height, width, 3), ``size`` = (height, width)."""
    height, width = size
    if frames.shape[-3:-1] == (height, width):
        return frames
    flat = frames.reshape(-1, *frames.shape[-3:])
    out = np.empty((len(flat), height, width, 3), dtype=np.uint8)
    for i, rgb in enumerate(flat):
        out[i] = resize_image(rgb, height, width)
    return out.reshape(*frames.shape[:-3], height, width, 3)


def resized_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) scaled so the shorter side is ``short_side``, keeping the aspect ratio; both even,
    as H.264 in 4:2:0 needs."""
    scale = short_side / min(width, height)
    return 2 * max(1, round(width * scale / 2)), 2 * max(1, round(height * scale / 2))


@dataclass(frozen=True)
class FrameFit:
    """Bring a frame to (height, width): ``crop`` cuts the centre of the frame at the target's aspect ratio,
    ``pad`` fits the whole frame inside and fills the rest with black; then the one resize."""

    height: int
    width: int
    mode: str = "crop"

    def __post_init__(self) -> None:
        if self.mode not in FITS:
            raise ValueError(f"fit must be one of {FITS}, got {self.mode!r}")

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        if (h, w) == (self.height, self.width):
            return rgb
        if h * self.width == w * self.height:  # the same aspect ratio: neither crop nor pad
            return resize_image(rgb, self.height, self.width)
        if self.mode == "crop":
            # the largest centred region of the target's aspect ratio
            crop_h = min(h, round(w * self.height / self.width))
            crop_w = min(w, round(h * self.width / self.height))
            top, left = (h - crop_h) // 2, (w - crop_w) // 2
            centre = np.ascontiguousarray(rgb[top:top + crop_h, left:left + crop_w])
            return resize_image(centre, self.height, self.width)
        scale = min(self.height / h, self.width / w)
        inner_h, inner_w = max(1, round(h * scale)), max(1, round(w * scale))
        out = np.zeros((self.height, self.width, 3), dtype=np.uint8)
        top, left = (self.height - inner_h) // 2, (self.width - inner_w) // 2
        out[top:top + inner_h, left:left + inner_w] = resize_image(rgb, inner_h, inner_w)
        return out
