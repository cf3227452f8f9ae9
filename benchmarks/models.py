"""Model speed benchmarks, each with its baseline measured in the same run.

    python benchmarks/models.py              # CPU (1 and 2 threads); CUDA too when present

* Peephole LSTM (eq. 1) vs torch.nn.LSTM of the same size: ms forward and forward+backward
  (batch 32, 100 steps, input 8, hidden 128), and the ratio (goal: at most 2x).
* ConvNet feature extraction: frames/s at the demo width (16) and the paper width (64).
* ConvNet pretraining: seconds per epoch on 3,500 FER-format images at the demo width.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from videmotion.convnet import ConvNet, extract_features, pretrain_convnet
from videmotion.temporal import benchmark_peephole_vs_nn_lstm


def feature_fps(width: int, fc: tuple[int, int], device: str, n: int = 1024) -> float:
    model = ConvNet(8, width=width, fc_sizes=fc)
    frames = np.random.default_rng(0).integers(0, 255, (n, 100, 100), dtype=np.uint8)
    extract_features(model, frames[:256], device=device)  # warm-up
    t = time.perf_counter()
    extract_features(model, frames, batch_size=256, device=device)
    return n / (time.perf_counter() - t)


def pretrain_epoch_seconds(device: str, n: int = 3500) -> float:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (n, 48, 48), dtype=np.uint8)
    labels = rng.integers(0, 7, n)
    usage = np.array(["Training"] * (n - 200) + ["PublicTest"] * 100 + ["PrivateTest"] * 100)
    _, history = pretrain_convnet(images, labels, usage, n_classes=7, seed=0, device=device,
                                  params={"width": 16, "fc_sizes": (256, 128), "epochs": 2, "batch_size": 64})
    return float(history["seconds"].iloc[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--skip-pretrain", action="store_true")
    args = parser.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        for threads in args.threads if device == "cpu" else [torch.get_num_threads()]:
            torch.set_num_threads(threads)
            label = f"{device}" + (f", {threads} thread(s)" if device == "cpu" else f" ({torch.cuda.get_device_name()})")
            r = benchmark_peephole_vs_nn_lstm(device=device)
            print(f"[{label}] LSTM batch 32 x 100 steps, input 8, hidden 128:")
            print(f"  forward          peephole {r['peephole_forward_ms']:.1f} ms  nn.LSTM {r['nn_lstm_forward_ms']:.1f} ms  ratio {r['ratio_forward']:.2f}x")
            print(f"  forward+backward peephole {r['peephole_fwd_bwd_ms']:.1f} ms  nn.LSTM {r['nn_lstm_fwd_bwd_ms']:.1f} ms  ratio {r['ratio_fwd_bwd']:.2f}x")
            for width, fc in ((16, (256, 128)), (64, (1024, 512))):
                print(f"  ConvNet width {width}: {feature_fps(width, fc, device):.0f} frames/s feature extraction (batch 256)")
            if not args.skip_pretrain:
                print(f"  ConvNet width 16 pretraining: {pretrain_epoch_seconds(device):.1f} s per epoch on 3,300 training images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
