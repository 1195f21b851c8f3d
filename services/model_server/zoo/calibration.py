"""Deterministic calibration images from the photos scikit-image ships.

Used to settle MobileNet's batch-norm statistics and to calibrate int8
quantization. One gradient image pins the input range to exactly [0, 255], so
int8 models get input scale 1/128 and zero point 127 (raw pixels in).
"""

from __future__ import annotations

import numpy as np
import skimage.data

from services.model_server.imaging import center_square, normalize

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "cat")


def photos() -> dict[str, np.ndarray]:
    return {name: getattr(skimage.data, name)() for name in PHOTOS}


def images(size: int, count: int = 64, seed: int = 7) -> np.ndarray:
    """`count` normalized float images: random crops and flips of the photos."""
    rng = np.random.default_rng(seed)
    sources = list(photos().values())
    ramp = np.linspace(0, 255, size).astype(np.uint8)
    out = [normalize(np.broadcast_to(ramp[np.newaxis, :, np.newaxis], (size, size, 3)))]
    while len(out) < count:
        rgb = sources[len(out) % len(sources)]
        h, w = rgb.shape[:2]
        side = int(min(h, w) * rng.uniform(0.5, 1.0))
        top, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        crop = rgb[top : top + side, left : left + side]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        out.append(normalize(center_square(np.ascontiguousarray(crop), size)))
    return np.stack(out).astype(np.float32)
