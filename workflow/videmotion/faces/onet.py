"""MTCNN's landmark network (ONet) on one face box, run by torch or by OpenCV's dnn module
(``faces.onet_runtime``)."""

from __future__ import annotations

import cv2
import numpy as np


def onet_forward(onet, tensor):
    """``onet(tensor)``, bit for bit, in about half the time on a CPU.

    facenet-pytorch's ONet is conv, PReLU and max-pooling layers on NCHW tensors; PyTorch's
    CPU max-pooling of an NCHW tensor is several times slower than of the same tensor
    stored channels-last. A maximum is exact whatever the memory order, so each pooling
    runs on a channels-last copy and hands a contiguous (NCHW) tensor back to the next
    convolution: every convolution sees exactly the input it sees in ``onet.forward``,
    and the outputs are identical (tests/test_faces_fast_paths.py checks it).
    """
    import torch

    def pool(layer, x):
        return layer(x.contiguous(memory_format=torch.channels_last)).contiguous()

    x = pool(onet.pool1, onet.prelu1(onet.conv1(tensor)))
    x = pool(onet.pool2, onet.prelu2(onet.conv2(x)))
    x = pool(onet.pool3, onet.prelu3(onet.conv3(x)))
    x = onet.prelu4(onet.conv4(x))
    x = x.permute(0, 3, 2, 1).contiguous()
    x = onet.prelu5(onet.dense5(x.view(x.shape[0], -1)))
    return onet.dense6_2(x), onet.dense6_3(x), onet.softmax6_1(onet.dense6_1(x))


# ONet's three outputs, in facenet-pytorch's order: box regression, the 5 landmarks
# (x1..x5, y1..y5 as fractions of the box side), and (not face, face) probabilities.
ONET_OUTPUTS = ("box", "points", "prob")


def onet_runtime_for(runtime: str, device: str) -> str:
    """What runs ONet for landmarks: ``faces.onet_runtime``, with "auto" resolved to "opencv"
    on a CPU and "torch" on a GPU."""
    if runtime == "auto":
        return "torch" if str(device).startswith("cuda") else "opencv"
    return runtime


def landmark_net(onet, device: str, runtime: str):
    """A function from one face, float32 (1, 3, 48, 48) RGB in MTCNN's scaling, to ONet's
    (10 landmark coordinates, 2 probabilities) as numpy arrays.

    "torch": facenet-pytorch's ONet through :func:`onet_forward` (bit-identical to it).
    "opencv": the same network, exported to ONNX in memory (once per process, under a
    second) and run by OpenCV's dnn module: one call into C++ per face instead of some
    thirty torch calls. In the face stage it took 1.0 against 1.7 ms per face on one CPU
    thread, and its outputs are within 1e-6 of torch's (tests/test_faces_fast_paths.py).
    """
    if runtime == "torch":
        import torch

        def run_torch(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            with torch.inference_mode():
                _, points, prob = onet_forward(onet, torch.from_numpy(rgb).to(device))
            return points.cpu().numpy()[0], prob.cpu().numpy()[0]

        return run_torch
    if runtime != "opencv":
        raise ValueError(f"faces.onet_runtime {runtime!r}: expected auto, torch or opencv")
    net = _opencv_onet(onet)
    names = list(ONET_OUTPUTS)

    def run_opencv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        net.setInput(rgb)
        _, points, prob = net.forward(names)
        return points[0], prob[0]

    return run_opencv


def _opencv_onet(onet) -> cv2.dnn.Net:
    """facenet-pytorch's ONet (weights as loaded, on the CPU) as an OpenCV dnn network."""
    import copy
    import io
    import warnings

    import torch

    try:
        import onnx  # noqa: F401  (torch's exporter needs it)
    except ImportError as err:
        raise ImportError(
            "faces.onet_runtime opencv needs the onnx package (a dependency of videmotion: "
            "pip install onnx), or set faces.onet_runtime: torch"
        ) from err
    cpu_onet = copy.deepcopy(onet).cpu().eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation notice
        torch.onnx.export(
            cpu_onet,
            torch.zeros(1, 3, 48, 48),
            buffer,
            dynamo=False,
            input_names=["face"],
            output_names=list(ONET_OUTPUTS),
            opset_version=13,
        )
    return cv2.dnn.readNetFromONNX(np.frombuffer(buffer.getvalue(), np.uint8))
