"""Image preprocessing shared by the model zoo, the client and the tests.

All four models take RGB images center-cropped to a square and resized with
bilinear filtering. Float models take (pixel - 127) / 128 as FP32; int8 models
take the raw pixels as UINT8, because their input quantization is exactly
scale 1/128, zero point 127 (the zoo calibrates it so).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

MEAN, STD = 127.0, 128.0


class ImageError(Exception):
    """The bytes are not an image this client can read."""


def decode(data: bytes) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as err:
        raise ImageError("not a readable image (JPEG, PNG, BMP, GIF, TIFF, WebP)") from err


def center_square(rgb: np.ndarray, size: int) -> np.ndarray:
    """uint8 HxWx3 -> uint8 size x size x 3."""
    height, width = rgb.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = rgb[top : top + side, left : left + side]
    resized = Image.fromarray(square).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


def normalize(pixels: np.ndarray) -> np.ndarray:
    return (pixels.astype(np.float32) - MEAN) / STD


def model_input(rgb: np.ndarray, size: int, datatype: str) -> np.ndarray:
    """A batch of one, in the datatype the model's input takes (FP32 or UINT8)."""
    pixels = center_square(rgb, size)
    batch = pixels[np.newaxis]
    return normalize(batch) if datatype == "FP32" else batch
