"""The model repository: TFLite models in encrypted volumes, opened only in memory.

On disk, `<dir>/<name>/<version>/` is a volume (services/volume) holding
`model.tflite` and `metadata.json` (tensor names, types, shapes, and the model's
name and version, checked at load so a volume copied under another model's
name is refused even if both share a key). The key of model `m` is the ACS
secret `model/m`.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.model_server.errors import ModelNotFoundError
from services.model_server.runtime import InterpreterPool
from services.model_server.tensor_spec import DTYPES, TensorSpec
from services.volume.errors import NotAVolumeError, VolumeError
from services.volume.volume import MANIFEST, Volume

MODEL = "model.tflite"
METADATA = "metadata.json"


class ModelLoadError(Exception):
    """A model cannot be loaded; the message says which and why."""


def secret_name(model: str) -> str:
    return f"model/{model}"


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    platform: str = "tflite"


@dataclass
class LoadedModel:
    info: ModelInfo
    pool: InterpreterPool


def _specs(raw: list[dict[str, object]]) -> tuple[TensorSpec, ...]:
    return tuple(
        TensorSpec(str(t["name"]), str(t["datatype"]), tuple(int(d) for d in t["shape"]))  # type: ignore[attr-defined]
        for t in raw
    )


def seal_model(tflite: Path, metadata: Path, out_dir: Path, key: bytes) -> ModelInfo:
    """Encrypts one model into its volume (the model owner's step); re-sealing bumps its version."""
    raw = metadata.read_bytes()
    meta = json.loads(raw)
    name, version = str(meta["name"]), str(meta["version"])
    target = out_dir / name / version
    if (target / MANIFEST).exists():
        volume = Volume.open(target, key)
    else:
        volume = Volume.create(target, key)
    with volume.update() as change, tflite.open("rb") as model:
        change.write(MODEL, model)
        change.write(METADATA, io.BytesIO(raw))
    return ModelInfo(name, version, _specs(meta["inputs"]), _specs(meta["outputs"]))


def _check_against_runtime(info: ModelInfo, pool: InterpreterPool) -> None:
    inputs, outputs = pool.details()
    for specs, details, kind in ((info.inputs, inputs, "input"), (info.outputs, outputs, "output")):
        if len(specs) != len(details):
            raise ModelLoadError(
                f"{info.name}: metadata lists {len(specs)} {kind}s, model has {len(details)}"
            )
        for spec, detail in zip(specs, details, strict=True):
            if np.dtype(detail["dtype"]) != DTYPES[spec.datatype]:
                raise ModelLoadError(
                    f"{info.name}: {kind} '{spec.name}' is {detail['dtype']}, "
                    f"metadata says {spec.datatype}"
                )
            if list(detail["shape"][1:]) != list(spec.shape[1:]):
                raise ModelLoadError(
                    f"{info.name}: {kind} '{spec.name}' shape mismatch with metadata"
                )


def load(
    directory: Path, name: str, version: str, key: bytes, pool: int, threads: int
) -> LoadedModel:
    folder = directory / name / version
    try:
        volume = Volume.open(folder, key)
        meta = json.loads(volume.read_bytes(METADATA))
        if (str(meta.get("name")), str(meta.get("version"))) != (name, version):
            raise ModelLoadError(
                f"model {name}/{version} refused: its volume holds "
                f"{str(meta.get('name'))[:64]}/{str(meta.get('version'))[:32]}"
            )
        plaintext = volume.read_bytes(MODEL)
    except NotAVolumeError as err:
        raise ModelLoadError(f"model {name}/{version}: no model volume ({err})") from err
    except VolumeError as err:
        raise ModelLoadError(f"model {name}/{version} refused: {err}") from err
    info = ModelInfo(name, version, _specs(meta["inputs"]), _specs(meta["outputs"]))
    try:
        interpreters = InterpreterPool(plaintext, pool, threads)
    except (ValueError, RuntimeError) as err:
        raise ModelLoadError(f"model {name}/{version}: not a valid TFLite model ({err})") from err
    _check_against_runtime(info, interpreters)
    return LoadedModel(info, interpreters)


class Registry:
    """Loaded models by name and version; the newest version is the default."""

    def __init__(self, models: list[LoadedModel]) -> None:
        self._models: dict[str, dict[str, LoadedModel]] = {}
        for model in models:
            self._models.setdefault(model.info.name, {})[model.info.version] = model

    def get(self, name: str, version: str = "") -> LoadedModel:
        versions = self._models.get(name)
        if not versions:
            served = ", ".join(sorted(self._models)) or "none"
            raise ModelNotFoundError(f"model '{name[:64]}' is not served here (served: {served})")
        if not version:
            return versions[max(versions, key=_version_key)]
        if version not in versions:
            raise ModelNotFoundError(f"model '{name[:64]}' has no version '{version[:32]}'")
        return versions[version]

    def versions(self, name: str) -> list[str]:
        return sorted(self._models.get(name, {}), key=_version_key)

    def all(self) -> list[LoadedModel]:
        return [m for versions in self._models.values() for m in versions.values()]


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (-1, version)
