"""The request body of the benches: the coffee photo, shaped and typed for the model."""

from __future__ import annotations

import numpy as np

from services.model_server import imaging
from services.model_server.zoo import calibration
from tests.model_server.harness import metadata


def model_input(model: str) -> tuple[np.ndarray, str]:
    spec = metadata(model)["inputs"][0]  # type: ignore[index]
    size, datatype = int(spec["shape"][1]), str(spec["datatype"])
    return imaging.model_input(calibration.photos()["coffee"], size, datatype), datatype
