"""EfficientNet-Lite preprocessing (numpy + PIL only).

preprocess(rgb_uint8) -> float32 array of shape (224, 224, 3), HWC, RGB order.

Steps, exactly:
  1. input: HxWx3 uint8 RGB array
  2. center-crop to a square of side s = min(H, W), top = (H - s)//2, left = (W - s)//2
  3. PIL.Image.fromarray(crop).resize((224, 224), PIL.Image.BILINEAR)
  4. convert to float32
  5. (x - 127.0) / 128.0   (EfficientNet-Lite convention: mean 127, std 128)
"""

import numpy as np
from PIL import Image

SIZE = 224
MEAN = 127.0
STD = 128.0


def center_crop_square(rgb_uint8):
    a = np.asarray(rgb_uint8)
    if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
        raise ValueError("expected HxWx3 uint8, got %s %s" % (a.shape, a.dtype))
    h, w = a.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return np.ascontiguousarray(a[top : top + s, left : left + s])


def resize_224(square_uint8):
    return np.asarray(Image.fromarray(square_uint8).resize((SIZE, SIZE), Image.BILINEAR))


def preprocess(rgb_uint8, mean=MEAN, std=STD):
    """HxWx3 uint8 RGB -> 224x224x3 float32, normalised (x - mean) / std.

    mean/std may be scalars (default 127/128) or per-channel length-3 sequences.
    """
    x = resize_224(center_crop_square(rgb_uint8)).astype(np.float32)
    mean = np.asarray(mean, dtype=np.float32)
    std = np.asarray(std, dtype=np.float32)
    return ((x - mean) / std).astype(np.float32)
