"""MobileNetV1 alpha=0.25 at 128x128, from Keras, with deterministic weights.

No pretrained weights can be fetched here, so weights come from a fixed seed,
and batch-norm statistics from a fixed set of calibration images, so the
network's activations have realistic ranges (which int8 quantization needs).
"""

from __future__ import annotations

import keras
import numpy as np

INPUT_SIZE = 128
ALPHA = 0.25
SEED = 20260101


def build() -> keras.Model:
    keras.utils.set_random_seed(SEED)
    return keras.applications.MobileNet(
        input_shape=(INPUT_SIZE, INPUT_SIZE, 3),
        alpha=ALPHA,
        weights=None,
        classes=1000,
        classifier_activation="softmax",
    )


def settle_batch_norm(model: keras.Model, images: np.ndarray, steps: int = 20) -> None:
    """Runs the images in training mode so BN moving statistics match real inputs."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.5
    for _ in range(steps):
        model(images, training=True)
