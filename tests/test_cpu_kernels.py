"""cpu_kernels: portable pins every library at AVX2 before it loads, in every job and in
`videmotion predict`; native leaves them alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from videmotion import cpu_kernels
from videmotion.command import cpu_kernels_mode

SKX = {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"}
PROBE = (
    "import json, cv2, numpy, torch; from videmotion import cpu_kernels; "
    "print(json.dumps(cpu_kernels.loaded_kernels()))"
)


def unpinned_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in cpu_kernels.VARIABLES}


def test_portable_caps_each_library_at_avx2_with_its_own_variable() -> None:
    env = cpu_kernels.environment("portable", flags=SKX | {"avx2"})
    assert env["ATEN_CPU_CAPABILITY"] == "avx2" and env["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    assert env["MKL_CBWR"] == "COMPATIBLE" and env["OPENBLAS_CORETYPE"] == "Haswell"
    assert env["NPY_DISABLE_CPU_FEATURES"] == "X86_V4 AVX512_ICL AVX512_SPR"
    # OpenCV warns on a level the CPU lacks: only the ones this CPU has are named (with OpenCV's hyphens)
    assert env["OPENCV_CPU_DISABLE"] == "AVX512F,AVX512-COMMON,AVX512-SKX"
    assert "OPENCV_CPU_DISABLE" not in cpu_kernels.environment("portable", flags={"avx2", "fma"})
    # the Intel IPP inside OpenCV dispatches on its own; it refuses a level the CPU lacks
    assert env["OPENCV_IPP"] == "avx2"
    assert "OPENCV_IPP" not in cpu_kernels.environment("portable", flags={"sse4_2"})
    assert cpu_kernels.environment("native") == {}
    with pytest.raises(ValueError, match="cpu_kernels must be one of portable, native, got 'avx512'"):
        cpu_kernels.environment("avx512")


def test_pinning_after_the_libraries_loaded_fails(monkeypatch) -> None:
    monkeypatch.delenv("ATEN_CPU_CAPABILITY")  # numpy and cv2 are loaded in this process
    with pytest.raises(RuntimeError, match=r"needs \['ATEN_CPU_CAPABILITY'\] set before"):
        cpu_kernels.pin("portable")
    with pytest.raises(RuntimeError, match="the environment lacks ATEN_CPU_CAPABILITY=avx2"):
        cpu_kernels.check_environment("portable")


def test_a_pinned_process_runs_no_library_wider_than_avx2() -> None:
    env = {**unpinned_environment(), **cpu_kernels.environment("portable")}
    pinned = json.loads(subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True).stdout)
    assert {"torch", "numpy", "opencv"} <= set(pinned) <= {"torch", "numpy", "opencv", "ipp"}
    assert not [level for level in pinned.values() if "512" in level], pinned
    if SKX <= cpu_kernels.cpu_flags():  # on an AVX-512 machine the pins change what runs
        native = subprocess.run([sys.executable, "-c", PROBE], env=unpinned_environment(), capture_output=True)
        native_kernels = json.loads(native.stdout)
        assert "512" in native_kernels["torch"] and "512" in native_kernels.get("ipp", "AVX512")


# FFmpeg (OpenCV's video decoder) has no variable that caps its kernels. The probe forces its
# CPU flags through libavutil (as `ffmpeg -cpuflags` does) before it decodes a clip.
DECODE_PROBE = """
import ctypes, hashlib, pathlib, sys
import cv2
libs = pathlib.Path(cv2.__file__).parents[1] / "opencv_python_headless.libs"
avutil = ctypes.CDLL(str(next(libs.glob("libavutil-*.so*"))))
AVX512, AVX512ICL = 0x100000, 0x200000  # AV_CPU_FLAG_AVX512, AV_CPU_FLAG_AVX512ICL
flags = {"all": -1, "avx2": avutil.av_get_cpu_flags() & ~(AVX512 | AVX512ICL), "none": 0}[sys.argv[1]]
avutil.av_force_cpu_flags(flags)
cap, digest = cv2.VideoCapture(sys.argv[2]), hashlib.sha256()
while (frame := cap.read())[0]:
    digest.update(frame[1].tobytes())
print(digest.hexdigest())
"""


def test_video_decoding_does_not_depend_on_avx512(tmp_path) -> None:
    if not SKX <= cpu_kernels.cpu_flags():
        pytest.skip("needs an AVX-512 CPU: compares FFmpeg's decoding with its AVX-512 paths on and off")
    import cv2
    import numpy as np

    if not list((Path(cv2.__file__).parents[1] / "opencv_python_headless.libs").glob("libavutil-*.so*")):
        pytest.skip("this OpenCV does not carry its own FFmpeg (opencv_python_headless.libs)")
    clip = tmp_path / "clip.mp4"  # the demo corpus's codec (MPEG-4 part 2), textured frames
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 25, (176, 144))
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.integers(0, 256, (144, 176, 3), dtype=np.uint8), (7, 7), 0)
    for t in range(12):
        writer.write(np.roll(base, 3 * t, axis=1))
    writer.release()
    digests = {
        mode: subprocess.run(
            [sys.executable, "-c", DECODE_PROBE, mode, str(clip)], capture_output=True, text=True, check=True
        ).stdout
        for mode in ("all", "avx2", "none")
    }
    assert digests["all"] == digests["avx2"]  # AVX-512 on or off: the same frames
    assert digests["none"] != digests["all"]  # the forced flags do reach the decoder (plain C rounds otherwise)


def test_check_pins_names_a_library_that_runs_wider(monkeypatch) -> None:
    monkeypatch.setattr(cpu_kernels, "loaded_kernels", lambda: {"torch": "AVX512", "numpy": "AVX2"})
    with pytest.raises(RuntimeError, match="cpu_kernels: portable, but torch runs AVX512"):
        cpu_kernels.check_pins("portable")
    assert cpu_kernels.check_pins("native") == "cpu kernels: native (torch AVX512, numpy AVX2)"


def test_the_command_reads_its_mode_before_it_imports_anything() -> None:
    assert cpu_kernels_mode(["predict", "v.mp4", "--model", "m.pt"]) == "portable"
    assert cpu_kernels_mode(["predict", "v.mp4", "--cpu-kernels", "native"]) == "native"
    assert cpu_kernels_mode(["predict", "--cpu-kernels=native", "v.mp4"]) == "native"
    # the command module imports none of the libraries it pins
    code = "import sys, videmotion.command; print(sorted({'torch', 'numpy', 'cv2'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], env=unpinned_environment(), capture_output=True, text=True)
    assert out.stdout.strip() == "[]", out.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "videmotion", "predict", "v.mp4", "--model", "m.pt", "--cpu-kernels", "avx512"],
        env=unpinned_environment(),
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "invalid choice: 'avx512'" in bad.stderr


# Every stage's float work, in small, as sha256 digests: the face detector on a drawn frame
# (the cascade, MTCNN's P-Net and R-Net in torch, ONet landmarks, the aligned crop), a training
# step of a ConvNet with the demo's layers on 48x48 inputs (oneDNN convolutions, MKL products;
# small, because emulation is slow), a training step of both temporal models (oneDNN linear,
# the peephole kernel), and NumPy's OpenBLAS product.
KERNEL_PROBE = """
import hashlib, json, sys
import cv2, numpy as np, torch
torch.set_num_threads(1)
cv2.setNumThreads(1)
from videmotion.config import face_params
from videmotion.convnet import ConvNet
from videmotion.faces import FaceDetector
from videmotion.faces.align import face_crop
from videmotion.temporal import build_temporal_model

out = {}
def put(name, *arrays):
    out[name] = hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes() for a in arrays)).hexdigest()

frame = np.load(sys.argv[1])
gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
params = face_params({"mtcnn_fallback": True, "align": True})
detector = FaceDetector(params, device="cpu")
put("viola_jones", np.array([d.box for d in detector.viola_jones(gray)]))
found = detector.mtcnn_detect(frame)
put("mtcnn", *[np.r_[d.box, d.score] for d in found])
face = found[0]
face.landmarks = detector.landmarks(frame, face.box)
put("onet_landmarks", face.landmarks)
put("aligned_crop", face_crop(gray, face, params)[0])

generator = torch.Generator().manual_seed(0)
torch.manual_seed(0)
convnet = ConvNet(7, width=16, fc_sizes=[256, 128], batch_norm=True, dropout=0.0, input_size=48)
optimizer = torch.optim.SGD(convnet.parameters(), lr=0.05)
x, y = torch.rand(4, 1, 48, 48, generator=generator), torch.randint(0, 7, (4,), generator=generator)
torch.nn.functional.cross_entropy(convnet(x), y).backward()
optimizer.step()
put("convnet_step", *[p.detach().numpy() for p in convnet.state_dict().values()])
for kind in ("lstm", "attention"):
    model = build_temporal_model(kind, 7, 16, 7, dropout=0.0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    seq, lengths = torch.randn(3, 12, 7, generator=generator), torch.tensor([12, 9, 5])
    logits = model(seq, lengths)
    logits = logits[0] if isinstance(logits, tuple) else logits
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 3, 6])).backward()
    optimizer.step()
    put(f"{kind}_step", *[p.detach().numpy() for p in model.parameters()])
a = np.random.default_rng(0).standard_normal((64, 300)).astype(np.float32)
put("numpy_dot", a @ a.T)
print(json.dumps(out))
"""
# QEMU's names of two AVX2 CPUs without AVX-512, one of each vendor
EMULATED_CPUS = ("Haswell", "EPYC-Rome")


@pytest.mark.slow
def test_portable_kernels_compute_as_avx2_cpus_of_both_vendors_do(tmp_path) -> None:
    """This machine with portable kernels against QEMU's user-mode emulation of an Intel and an
    AMD AVX2 CPU (QEMU's floats are IEEE-exact; it reports its own vendor, features and cache
    sizes to the libraries, which pick their kernels by them): every digest of the probe is
    the same, bit for bit. MKL's AVX2 path is not (MKL_CBWR=AVX2 differs on EPYC-Rome in the
    MTCNN, ConvNet and temporal digests), hence MKL_CBWR=COMPATIBLE."""
    import shutil

    import numpy as np
    from conftest import drawn_face_frame, skip_unless_ci

    qemu = shutil.which("qemu-x86_64")
    if qemu is None:
        skip_unless_ci("needs QEMU's user-mode emulator qemu-x86_64 (Debian: apt-get install qemu-user)")
    if "avx2" not in cpu_kernels.cpu_flags():
        pytest.skip("needs an AVX2 CPU: portable kernels are AVX2 ones")
    np.save(tmp_path / "frame.npy", drawn_face_frame(half_height=45))
    env = {**unpinned_environment(), **cpu_kernels.environment("portable")}
    command = [sys.executable, "-c", KERNEL_PROBE, str(tmp_path / "frame.npy")]
    runs = {
        cpu: subprocess.Popen([qemu, "-cpu", cpu, *command], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for cpu in EMULATED_CPUS
    }  # the emulated runs side by side (minutes each), this machine's meanwhile
    here = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert here.returncode == 0, here.stderr[-2000:]
    ours = json.loads(here.stdout)
    assert len(ours) == 8
    differing = {}
    for cpu, run in runs.items():
        stdout, stderr = run.communicate(timeout=900)
        assert run.returncode == 0, stderr.decode()[-2000:]
        theirs = json.loads(stdout)
        differing[cpu] = sorted(name for name in ours if ours[name] != theirs.get(name))
    assert differing == {cpu: [] for cpu in EMULATED_CPUS}
