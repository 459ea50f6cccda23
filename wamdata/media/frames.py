"""The one resize: every frame that changes size in wamdata (a source's clips, an HDF5 camera, the stream's
windows, a labeler's inputs) goes through ``resize_frames``, so the same frame gives the same pixels
whatever container it came from and whichever stage asks.

The filter is Pillow's BOX (each output pixel is the area-weighted mean of the input pixels it covers),
in uint8. Area averaging is the usual choice for shrinking camera frames (no aliasing, no ringing), and
Pillow's integer arithmetic gives the same bytes on every CPU, which deterministic shards need (swscale's
SIMD paths differ between CPUs, and it scales RGB input through an internal YUV conversion: up to 6 levels
off an exact area mean, measured on a 1080p camera frame shrunk to 456x256). ``FrameFit`` first centre-crops or
pads a frame to the target aspect ratio, so videos of several sizes and orientations share one frame size.
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
    ``pad`` fits the whole frame inside and fills the rest with black (letterbox); then the one resize."""

    height: int
    width: int
    mode: str = "crop"

    def __post_init__(self) -> None:
        if self.mode not in FITS:
            raise ValueError(f"fit must be one of {FITS}, got {self.mode!r}")
        if self.height < 1 or self.width < 1:
            raise ValueError(f"a frame size must be positive, got {self.height}x{self.width}")

    def boxes(self, height: int, width: int) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
        """Where a (height, width) frame goes: (top, left, height, width) of the part of it that is kept, and of
        the part of the output that part is resized into (the rest of the output is black)."""
        whole = (0, 0, height, width)
        if height * self.width == width * self.height:  # the same aspect ratio: neither crop nor pad
            return whole, (0, 0, self.height, self.width)
        if self.mode == "crop":  # the largest centred region of the target's aspect ratio
            crop_h = min(height, round(width * self.height / self.width))
            crop_w = min(width, round(height * self.width / self.height))
            return ((height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w), (0, 0, self.height, self.width)
        scale = min(self.height / height, self.width / width)
        inner_h, inner_w = max(1, round(height * scale)), max(1, round(width * scale))
        return whole, ((self.height - inner_h) // 2, (self.width - inner_w) // 2, inner_h, inner_w)

    def pixel_transform(self, height: int, width: int) -> np.ndarray:
        """The 3x3 matrix taking a point of a (height, width) frame to the same point of its fitted output, in
        pixel coordinates from the top-left corner (pixel (i, j) spans [j, j+1) x [i, i+1)): a camera
        intrinsic K of the input becomes ``pixel_transform(h, w) @ K``."""
        (top, left, kept_h, kept_w), (out_top, out_left, out_h, out_w) = self.boxes(height, width)
        scale_x, scale_y = out_w / kept_w, out_h / kept_h
        return np.array([[scale_x, 0.0, out_left - left * scale_x],
                         [0.0, scale_y, out_top - top * scale_y],
                         [0.0, 0.0, 1.0]])

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        (top, left, kept_h, kept_w), (out_top, out_left, out_h, out_w) = self.boxes(*rgb.shape[:2])
        kept = rgb if (kept_h, kept_w) == rgb.shape[:2] else np.ascontiguousarray(
            rgb[top:top + kept_h, left:left + kept_w])
        inner = resize_image(kept, out_h, out_w)
        if (out_h, out_w) == (self.height, self.width):
            return inner
        out = np.zeros((self.height, self.width, 3), dtype=np.uint8)
        out[out_top:out_top + out_h, out_left:out_left + out_w] = inner
        return out
