"""Model speed benchmarks, each with its baseline measured in the same run.

    python benchmarks/models.py              # CPU (1 and 2 threads); CUDA too when present

* Peephole LSTM (eq. 1) vs torch.nn.LSTM of the same size: ms forward and forward+backward
  (batch 32, 100 steps, input 8, hidden 128), and the ratio (goal: at most 2x), for the kernel
  the module picks by default (the compiled C++ one when it builds) and for the Python fallback;
  on CPU also the compiled kernel's build time (first use, in a fresh extensions folder) and its
  load time once cached, each in a fresh process.
* ConvNet feature extraction: frames/s at the demo width (16) and the paper width (64).
* Pretraining's augmentation: ms per batch of 64 faces (100x100), the whole batch warped at
  once on the device (``videmotion.convnet.augment_batch``) against face by face with
  torchvision's v2 transforms on the CPU (the baseline).
* ConvNet pretraining: seconds per epoch on 3,500 FER-format images at the demo width.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from videmotion.convnet import ConvNet, augment_batch, extract_features, pretrain_convnet
from videmotion.peephole import KERNEL_ENV, PeepholeLSTM, resolve_kernel
from videmotion.torch_utils import resolve_device


def time_ms(fn: Callable[[], Any], repeats: int, device: torch.device) -> float:
    """Median wall time of fn() in milliseconds (CUDA synchronised)."""
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append((time.perf_counter() - started) * 1000.0)
    return float(np.median(times))


def benchmark_peephole_vs_nn_lstm(
    batch: int = 32,
    steps: int = 100,
    input_size: int = 8,
    hidden: int = 128,
    repeats: int = 20,
    *,
    compile: bool = False,
    device: str = "cpu",
    seed: int = 0,
    kernel: str = "auto",
) -> dict[str, Any]:
    """Time PeepholeLSTM against torch.nn.LSTM (forward under no_grad; forward+backward).

    Returns milliseconds (median over `repeats`, after 2 warm-up runs) for both models, the
    ratios peephole/nn.LSTM, and with ``compile=True`` the seconds torch.compile took on its
    first call (compile time is real cost for a short run).
    """
    torch_device = resolve_device(device)
    torch.manual_seed(seed)
    x = torch.randn(batch, steps, input_size, device=torch_device)
    lengths = torch.full((batch,), steps, dtype=torch.int64)
    peephole = PeepholeLSTM(input_size, hidden, kernel=kernel).to(torch_device)
    reference = nn.LSTM(input_size, hidden, batch_first=True).to(torch_device)
    runner: Callable[..., Any] = peephole  # the compiled module when `compile` (set below)

    def peephole_call() -> torch.Tensor:
        return runner(x, lengths)[0]

    result: dict[str, Any] = {
        "batch": batch,
        "steps": steps,
        "input_size": input_size,
        "hidden": hidden,
        "repeats": repeats,
        "device": str(torch_device),
        "threads": torch.get_num_threads(),
        "compiled": compile,
        "kernel": resolve_kernel(kernel),
    }
    if compile:
        runner = torch.compile(peephole)
        started = time.perf_counter()
        peephole_call().sum().backward()
        result["compile_s"] = time.perf_counter() - started

    def forward_only(call: Callable[[], torch.Tensor]) -> Callable[[], None]:
        def run() -> None:
            with torch.no_grad():
                call()

        return run

    def forward_backward(call: Callable[[], torch.Tensor], module: nn.Module) -> Callable[[], None]:
        def run() -> None:
            module.zero_grad(set_to_none=True)
            call().sum().backward()

        return run

    def reference_call() -> torch.Tensor:
        return reference(x)[0]

    for name, call, module in (("peephole", peephole_call, peephole), ("nn_lstm", reference_call, reference)):
        for label, fn in (("forward", forward_only(call)), ("fwd_bwd", forward_backward(call, module))):
            time_ms(fn, 2, torch_device)
            result[f"{name}_{label}_ms"] = time_ms(fn, repeats, torch_device)
    result["ratio_forward"] = result["peephole_forward_ms"] / result["nn_lstm_forward_ms"]
    result["ratio_fwd_bwd"] = result["peephole_fwd_bwd_ms"] / result["nn_lstm_fwd_bwd_ms"]
    return result


_LOAD_SNIPPET = (
    "import time; from videmotion import peephole; t = time.perf_counter(); peephole.load_extension(); "
    "print(time.perf_counter() - t)"
)


def extension_build_and_load_seconds() -> tuple[float, float]:
    """Seconds the compiled peephole kernel takes at first use (a build, in a fresh
    TORCH_EXTENSIONS_DIR) and once cached (a load), each timed in a fresh Python process
    (the import of torch and videmotion not counted)."""
    with tempfile.TemporaryDirectory(prefix="videmotion-ext-") as folder:
        env = {**os.environ, "TORCH_EXTENSIONS_DIR": folder}
        env.pop(KERNEL_ENV, None)
        seconds = []
        for _ in range(2):
            done = subprocess.run(
                [sys.executable, "-c", _LOAD_SNIPPET], env=env, capture_output=True, text=True, check=False
            )
            if done.returncode != 0:
                raise RuntimeError(f"building the peephole LSTM extension failed: {done.stderr.strip()[-500:]}")
            seconds.append(float(done.stdout.strip().splitlines()[-1]))
    return seconds[0], seconds[1]


def feature_fps(width: int, fc: tuple[int, int], device: str, n: int = 1024) -> float:
    model = ConvNet(8, width=width, fc_sizes=fc)
    frames = np.random.default_rng(0).integers(0, 255, (n, 100, 100), dtype=np.uint8)
    extract_features(model, frames[:256], device=device)  # warm-up
    t = time.perf_counter()
    extract_features(model, frames, batch_size=256, device=device)
    return n / (time.perf_counter() - t)


def augmentation_ms(device: str, batch: int = 64, repeats: int = 20) -> tuple[float, float]:
    """(batched on `device`, face by face with torchvision v2 on the CPU): median ms per batch."""
    from torchvision.transforms import v2  # the baseline only: the package augments without torchvision

    faces_per_face = v2.Compose(
        [
            v2.RandomHorizontalFlip(),
            v2.RandomAffine(degrees=10, translate=(0.06, 0.06), scale=(0.94, 1.06)),
            v2.ColorJitter(brightness=0.25),
        ]
    )
    torch_device = torch.device(device)
    x = torch.from_numpy(np.random.default_rng(0).random((batch, 1, 100, 100), dtype=np.float32))
    on_device = x.to(torch_device)
    batched = time_ms(lambda: augment_batch(on_device), repeats, torch_device)
    one_by_one = time_ms(lambda: torch.stack([faces_per_face(face) for face in x]), repeats, torch.device("cpu"))
    return batched, one_by_one


def pretrain_epoch_seconds(device: str, n: int = 3500) -> float:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (n, 48, 48), dtype=np.uint8)
    labels = rng.integers(0, 7, n)
    usage = np.array(["Training"] * (n - 200) + ["PublicTest"] * 100 + ["PrivateTest"] * 100)
    _, history = pretrain_convnet(
        images,
        labels,
        usage,
        n_classes=7,
        seed=0,
        device=device,
        params={"width": 16, "fc_sizes": (256, 128), "epochs": 2, "batch_size": 64},
    )
    return float(history["seconds"].iloc[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--skip-pretrain", action="store_true")
    parser.add_argument("--skip-build", action="store_true", help="do not time the C++ kernel's build and load")
    args = parser.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if not args.skip_build:
        try:
            build_s, load_s = extension_build_and_load_seconds()
        except RuntimeError as err:
            print(f"peephole LSTM C++ kernel: not available ({err})")
        else:
            print(f"peephole LSTM C++ kernel: build at first use {build_s:.1f} s")
            print(f"peephole LSTM C++ kernel: load when cached {load_s:.2f} s")
    for device in devices:
        for threads in args.threads if device == "cpu" else [torch.get_num_threads()]:
            torch.set_num_threads(threads)
            label = f"{device}" + (
                f", {threads} thread(s)" if device == "cpu" else f" ({torch.cuda.get_device_name()})"
            )
            print(f"[{label}] LSTM batch 32 x 100 steps, input 8, hidden 128:")
            kernels = ["auto", "python"] if resolve_kernel("auto") == "compiled" else ["auto"]
            for kernel in kernels:
                r = benchmark_peephole_vs_nn_lstm(device=device, kernel=kernel)
                name = f"{r['kernel']} kernel" + (" (default)" if kernel == "auto" else "")
                print(f"  {name}:")
                print(
                    f"    forward          peephole {r['peephole_forward_ms']:.1f} ms  "
                    f"nn.LSTM {r['nn_lstm_forward_ms']:.1f} ms  ratio {r['ratio_forward']:.2f}x"
                )
                print(
                    f"    forward+backward peephole {r['peephole_fwd_bwd_ms']:.1f} ms  "
                    f"nn.LSTM {r['nn_lstm_fwd_bwd_ms']:.1f} ms  ratio {r['ratio_fwd_bwd']:.2f}x"
                )
            for width, fc in ((16, (256, 128)), (64, (1024, 512))):
                print(
                    f"  ConvNet width {width}: {feature_fps(width, fc, device):.0f} frames/s "
                    "feature extraction (batch 256)"
                )
            batched, one_by_one = augmentation_ms(device)
            print(
                f"  pretraining's augmentation, batch of 64: batched {batched:.1f} ms  "
                "face by face (torchvision v2, CPU) "
                f"{one_by_one:.1f} ms  ratio {batched / one_by_one:.2f}x"
            )
            if not args.skip_pretrain:
                print(
                    f"  ConvNet width 16 pretraining: {pretrain_epoch_seconds(device):.1f} s per epoch "
                    "on 3,300 training images"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
