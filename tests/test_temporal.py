"""Known-answer tests for the peephole LSTM (eq. 1), the attention LSTM (eqs. 2-4) and their training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from videmotion import peephole, peephole_kernel
from videmotion.metrics import uar
from videmotion.peephole import PeepholeLSTM
from videmotion.temporal import (
    AttentionLSTMClassifier,
    LSTMClassifier,
    SequenceSet,
    load_temporal_checkpoint,
    pad_batch,
    predict_temporal,
    save_temporal_checkpoint,
    train_temporal,
)

torch.set_num_threads(1)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _numpy_peephole(x: np.ndarray, p: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 1 in the standard peephole form, one sequence x (T, F), written gate by gate."""
    d = p["w_ci"].shape[0]
    h, c = np.zeros(d), np.zeros(d)
    outputs = []
    for x_t in x:
        i = _sigmoid(p["W_xi"] @ x_t + p["W_hi"] @ h + p["w_ci"] * c + p["b_i"])
        f = _sigmoid(p["W_xf"] @ x_t + p["W_hf"] @ h + p["w_cf"] * c + p["b_f"])
        c = f * c + i * np.tanh(p["W_xc"] @ x_t + p["W_hc"] @ h + p["b_c"])
        o = _sigmoid(p["W_xo"] @ x_t + p["W_ho"] @ h + p["w_co"] * c + p["b_o"])
        h = o * np.tanh(c)
        outputs.append(h)
    return np.stack(outputs), h


def _hand_set_peephole(input_size: int = 2, hidden: int = 2) -> tuple[PeepholeLSTM, dict[str, np.ndarray]]:
    """A PeepholeLSTM whose weights are fixed, distinct numbers, and the same weights by name."""
    rng = np.random.default_rng(7)
    p = {f"W_x{g}": rng.uniform(-1, 1, (hidden, input_size)).round(2) for g in "ifco"}
    p |= {f"W_h{g}": rng.uniform(-1, 1, (hidden, hidden)).round(2) for g in "ifco"}
    p |= {f"b_{g}": rng.uniform(-0.5, 0.5, hidden).round(2) for g in "ifco"}
    p |= {f"w_c{g}": rng.uniform(-1, 1, hidden).round(2) for g in "ifo"}
    cell = PeepholeLSTM(input_size, hidden).double()
    with torch.no_grad():
        cell.weight_x.copy_(torch.from_numpy(np.concatenate([p[f"W_x{g}"] for g in "ifco"])))
        cell.weight_h.copy_(torch.from_numpy(np.concatenate([p[f"W_h{g}"] for g in "ifco"])))
        cell.bias.copy_(torch.from_numpy(np.concatenate([p[f"b_{g}"] for g in "ifco"])))
        cell.peephole_i.copy_(torch.from_numpy(p["w_ci"]))
        cell.peephole_f.copy_(torch.from_numpy(p["w_cf"]))
        cell.peephole_o.copy_(torch.from_numpy(p["w_co"]))
    return cell, p


@pytest.mark.parametrize("steps", [1, 2])
def test_peephole_matches_numpy_eq1(steps: int) -> None:
    cell, p = _hand_set_peephole()
    x = np.array([[0.5, -1.0], [1.5, 0.25]])[:steps]
    hidden, h_last = cell(torch.from_numpy(x)[None], torch.tensor([steps]))
    expected_h, expected_last = _numpy_peephole(x, p)
    np.testing.assert_allclose(hidden[0].detach().numpy(), expected_h, atol=1e-12)
    np.testing.assert_allclose(h_last[0].detach().numpy(), expected_last, atol=1e-12)


def test_peephole_one_step_by_hand() -> None:
    """One step from h0 = c0 = 0 with scalar weights: the peepholes on c_{t-1} vanish, w_co acts on c_1."""
    cell = PeepholeLSTM(1, 1).double()
    with torch.no_grad():
        cell.weight_x.copy_(torch.tensor([[1.0], [2.0], [3.0], [4.0]], dtype=torch.float64))
        cell.weight_h.zero_()
        cell.bias.copy_(torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64))
        cell.peephole_i.fill_(5.0)
        cell.peephole_f.fill_(6.0)
        cell.peephole_o.fill_(0.5)
    x = 0.2
    i, c_in = _sigmoid(1.0 * x + 0.1), np.tanh(3.0 * x + 0.3)
    c1 = i * c_in
    h1 = _sigmoid(4.0 * x + 0.4 + 0.5 * c1) * np.tanh(c1)
    _, h_last = cell(torch.tensor([[[x]]], dtype=torch.float64), torch.tensor([1]))
    assert h_last.item() == pytest.approx(h1, abs=1e-12)


def test_padding_does_not_change_valid_outputs_or_h_last() -> None:
    torch.manual_seed(0)
    cell = PeepholeLSTM(3, 5)
    short, long = torch.randn(4, 3), torch.randn(7, 3)
    alone_h, alone_last = cell(short[None], torch.tensor([4]))
    x, lengths = pad_batch([short, long])
    batch_h, batch_last = cell(x, lengths)
    torch.testing.assert_close(batch_h[0, :4], alone_h[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(batch_last[0], alone_last[0], rtol=0, atol=1e-6)
    assert torch.all(batch_h[0, 4:] == 0)
    # Extra trailing padding beyond the longest sequence changes nothing either.
    wider = torch.cat([x, torch.full((2, 3, 3), 9.0)], dim=1)
    wider_h, wider_last = cell(wider, lengths)
    torch.testing.assert_close(wider_h[:, :7], batch_h, rtol=0, atol=0)
    torch.testing.assert_close(wider_last, batch_last, rtol=0, atol=0)
    assert torch.all(wider_h[:, 7:] == 0)


def test_pad_batch_shapes_and_values() -> None:
    x, lengths = pad_batch([np.ones((2, 3), np.float32), 2 * np.ones((4, 3), np.float32)])
    assert x.shape == (2, 4, 3) and x.dtype == torch.float32
    assert lengths.tolist() == [2, 4]
    assert x[0, 2:].abs().sum() == 0 and torch.all(x[1] == 2)


def test_classifier_shapes() -> None:
    torch.manual_seed(0)
    x, lengths = pad_batch([torch.randn(t, 6) for t in (3, 5, 2)])
    logits = LSTMClassifier(6, 4, 8, dropout=0.2).eval()(x, lengths)
    assert logits.shape == (3, 8)
    logits, alpha = AttentionLSTMClassifier(6, 4, 8).eval()(x, lengths)
    assert logits.shape == (3, 8) and alpha.shape == (3, 5)


def test_attention_weights_sum_to_one_and_ignore_padding() -> None:
    torch.manual_seed(1)
    model = AttentionLSTMClassifier(3, 4, 2).eval()
    x, lengths = pad_batch([torch.randn(t, 3) for t in (2, 6, 4)])
    x[0, 2:] = 100.0  # garbage in padded positions must not matter
    _, alpha = model(x, lengths)
    torch.testing.assert_close(alpha.sum(1), torch.ones(3))
    for row, n in enumerate(lengths.tolist()):
        assert torch.all(alpha[row, n:] == 0)
        assert torch.all(alpha[row, :n] > 0)
    logits_alone, alpha_alone = model(x[:1, :2], lengths[:1])
    torch.testing.assert_close(alpha[0, :2], alpha_alone[0], rtol=0, atol=1e-6)


def test_attention_matches_numpy_eqs_2_to_4() -> None:
    torch.manual_seed(2)
    model = AttentionLSTMClassifier(2, 3, 2).double().eval()
    seq = torch.randn(4, 2, dtype=torch.float64)
    x, lengths = pad_batch([seq, seq[:2]])
    x = x.double()
    logits, alpha = model(x, lengths)
    for row, n in enumerate((4, 2)):
        hidden, _ = model.lstm(x[row : row + 1, :n], torch.tensor([n]))
        H = hidden[0].detach().numpy().T  # d x N, as in the paper
        W_h, w = model.W_h.weight.detach().numpy(), model.w.weight.detach().numpy()[0]
        W_p, W_x = model.W_p.weight.detach().numpy(), model.W_x.weight.detach().numpy()
        W_s, b_s = model.W_s.weight.detach().numpy(), model.W_s.bias.detach().numpy()
        M = np.tanh(W_h @ H)
        scores = w @ M
        a = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
        r = H @ a
        h_star = np.tanh(W_p @ r + W_x @ H[:, -1])
        y = W_s @ h_star + b_s
        np.testing.assert_allclose(alpha[row, :n].detach().numpy(), a, atol=1e-12)
        np.testing.assert_allclose(logits[row].detach().numpy(), y, atol=1e-12)


def test_attention_projections_have_no_bias() -> None:
    model = AttentionLSTMClassifier(2, 3, 2)
    assert model.W_h.bias is None and model.w.bias is None and model.W_p.bias is None and model.W_x.bias is None
    assert model.W_s.bias is not None


def test_uar_known_answer() -> None:
    # class 0: 2/2 correct, class 1: 1/3, class 2: 0/1 -> (1 + 1/3 + 0) / 3
    y_true = np.array([0, 0, 1, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 0, 0, 1])
    assert uar(y_true, y_pred, 3) == pytest.approx((1 + 1 / 3) / 3)  # training's validation MAP


def _burst_set(n: int, seed: int, n_features: int = 4, n_classes: int = 3) -> SequenceSet:
    """Noise sequences (16-29 frames) whose class is carried only by a 2-frame burst on feature `label`.

    Sequences are long enough that the last hidden state alone is a weak summary, so the
    attention model gains by looking back at the burst.
    """
    rng = np.random.default_rng(seed)
    seqs, labels = [], []
    for index in range(n):
        label = index % n_classes
        length = int(rng.integers(16, 30))
        seq = rng.normal(0.0, 0.3, (length, n_features)).astype(np.float32)
        start = int(rng.integers(0, length - 1))
        seq[start : start + 2, label] += 3.0
        seq[start : start + 2, n_features - 1] += 3.0  # burst marker shared by all classes
        seqs.append(seq)
        labels.append(label)
    return SequenceSet(seqs, np.array(labels), [f"clip{index}" for index in range(n)])


FAST = {"max_epochs": 25, "patience": 25, "batch_size": 16, "lr": 0.01, "lr_decay": 0.99, "l1": 1e-4}


def test_attention_lstm_learns_burst_and_attends_to_it() -> None:
    train, val = _burst_set(96, seed=0), _burst_set(48, seed=1)
    torch.manual_seed(0)
    model = AttentionLSTMClassifier(4, 16, 3, dropout=0.0)
    model, history = train_temporal(model, train, val, params=FAST, seed=0, device="cpu")
    probs, alphas = predict_temporal(model, val, device="cpu")
    assert probs.shape == (48, 3) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert np.mean(probs.argmax(1) == val.labels) >= 0.9
    assert history["val_map"].max() >= 0.9
    burst_weight, uniform_weight = [], []
    for seq, alpha in zip(val.sequences, alphas, strict=True):
        burst = seq[:, -1] > 1.5
        burst_weight.append(alpha[burst].sum())
        uniform_weight.append(burst.sum() / len(seq))
    assert np.mean(burst_weight) > 1.5 * np.mean(uniform_weight)


def test_lstm_classifier_learns_burst() -> None:
    train, val = _burst_set(96, seed=2), _burst_set(48, seed=3)
    torch.manual_seed(0)
    model, history = train_temporal(
        LSTMClassifier(4, 16, 3, dropout=0.0), train, val, params=FAST, seed=0, device="cpu"
    )
    probs, alphas = predict_temporal(model, val, device="cpu")
    assert alphas is None
    assert np.mean(probs.argmax(1) == val.labels) >= 0.85
    best = history.attrs["best_epoch"]
    assert history.loc[history["epoch"] == best, "val_map"].item() == history["val_map"].max()


def test_same_seed_gives_identical_history_and_predictions() -> None:
    train, val = _burst_set(32, seed=4), _burst_set(12, seed=5)
    params = {**FAST, "max_epochs": 3, "class_weighting": "inverse", "optimizer": "rmsprop"}
    runs = []
    for _ in range(2):
        torch.manual_seed(3)
        model = AttentionLSTMClassifier(4, 8, 3, dropout=0.3)
        model, history = train_temporal(model, train, val, params=params, seed=11, device="cpu")
        runs.append((history.drop(columns="seconds"), predict_temporal(model, val, device="cpu")))
    (hist_a, (probs_a, alphas_a)), (hist_b, (probs_b, alphas_b)) = runs
    assert hist_a.equals(hist_b)
    np.testing.assert_array_equal(probs_a, probs_b)
    for a, b in zip(alphas_a, alphas_b, strict=True):
        np.testing.assert_array_equal(a, b)


def test_max_iterations_caps_optimizer_steps_and_lr_decays() -> None:
    train, val = _burst_set(40, seed=6), _burst_set(10, seed=7)
    params = {"max_iterations": 5, "batch_size": 16, "max_epochs": 10, "lr": 0.005, "lr_decay": 0.99}
    _, history = train_temporal(LSTMClassifier(4, 4, 3), train, val, params=params, seed=0, device="cpu")
    assert history["steps"].iloc[-1] == 5 and history.attrs["stop_reason"] == "max_iterations"
    assert history["lr"].iloc[1] == pytest.approx(0.005 * 0.99)


def test_standardization_is_stored_in_the_model(tmp_path) -> None:
    train = _burst_set(20, seed=8)
    model, _ = train_temporal(
        AttentionLSTMClassifier(4, 4, 3), train, train, params={"max_epochs": 1}, seed=0, device="cpu"
    )
    frames = np.concatenate(train.sequences)
    np.testing.assert_allclose(model.feature_mean.numpy(), frames.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.feature_std.numpy(), frames.std(0), rtol=1e-5)
    save_temporal_checkpoint(tmp_path / "att.pt", model, {"seed": 0})
    loaded, meta = load_temporal_checkpoint(tmp_path / "att.pt", device="cpu")
    assert meta["seed"] == 0 and meta["model_config"]["kind"] == "attention"
    np.testing.assert_array_equal(predict_temporal(loaded, train, "cpu")[0], predict_temporal(model, train, "cpu")[0])


def test_unknown_parameter_is_refused() -> None:
    train = _burst_set(6, seed=9)
    with pytest.raises(ValueError, match="unknown parameter"):
        train_temporal(LSTMClassifier(4, 4, 3), train, train, params={"learning_rate": 0.1}, seed=0, device="cpu")


def test_without_validation_the_last_epoch_is_kept() -> None:
    train = _burst_set(12, seed=10)
    _, history = train_temporal(LSTMClassifier(4, 4, 3), train, None, params={"max_epochs": 3}, seed=0, device="cpu")
    assert len(history) == 3 and history.attrs["best_epoch"] == 3
    assert history["val_loss"].isna().all()


# The recurrence kernels of PeepholeLSTM: the Python loop, and the compiled C++ one through its
# CPU fused loops and through its ATen-op path (the one CUDA tensors take).
KERNEL_CASES = ["python", "compiled", "compiled-aten"]


@pytest.fixture
def use_kernel(monkeypatch: pytest.MonkeyPatch):
    """Returns a function that sets a module to one of KERNEL_CASES (skipping when it cannot build)."""
    monkeypatch.delenv(peephole.KERNEL_ENV, raising=False)

    def use(cell: PeepholeLSTM, case: str) -> PeepholeLSTM:
        if case.startswith("compiled"):
            _compiled_or_skip()
            monkeypatch.setattr(peephole_kernel, "_CPU_FUSED", case == "compiled")
        cell.kernel = case.split("-")[0]
        return cell

    return use


def _compiled_or_skip() -> None:
    try:
        peephole.load_extension()
    except RuntimeError as err:
        pytest.skip(f"the C++ peephole kernel cannot be built here (torch.utils.cpp_extension): {err}")


def _variable_batch(dtype: torch.dtype, hidden: int, seed: int) -> tuple[PeepholeLSTM, torch.Tensor, torch.Tensor]:
    """A peephole LSTM and an unsorted variable-length batch with trailing padding beyond the longest clip."""
    torch.manual_seed(seed)
    cell = PeepholeLSTM(3, hidden).to(dtype)
    with torch.no_grad():  # non-trivial peepholes and bias, so that every term of eq. 1 matters
        for parameter in cell.parameters():
            parameter.uniform_(-0.8, 0.8)
    lengths = torch.tensor([3, 5, 1, 5, 2])
    x = torch.randn(5, 6, 3, dtype=dtype)
    return cell, x, lengths


@pytest.mark.parametrize("case", KERNEL_CASES)
def test_fused_backward_passes_gradcheck_on_variable_lengths(case: str, use_kernel) -> None:
    """The hand-written BPTT against finite differences, for x and every parameter, through H and h_last."""
    cell, x, lengths = _variable_batch(torch.float64, hidden=2, seed=0)
    use_kernel(cell, case)
    names = [name for name, _ in cell.named_parameters()]

    def run(x_in: torch.Tensor, *params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.func.functional_call(cell, dict(zip(names, params, strict=True)), (x_in, lengths))

    inputs = (x.requires_grad_(), *(p.detach().clone().requires_grad_() for p in cell.parameters()))
    assert torch.autograd.gradcheck(run, inputs, eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("case", ["compiled", "compiled-aten"])
@pytest.mark.parametrize("lengths", [[1], [4], [1, 1, 1], [2, 3]], ids=["b1-t1", "b1-t4", "b3-t1", "b2-var"])
def test_compiled_passes_gradcheck_on_small_shapes(case: str, lengths: list[int], use_kernel) -> None:
    torch.manual_seed(3)
    cell = use_kernel(PeepholeLSTM(2, 3).double(), case)
    with torch.no_grad():
        for parameter in cell.parameters():
            parameter.uniform_(-0.9, 0.9)
    x = torch.randn(len(lengths), max(lengths), 2, dtype=torch.float64)
    names = [name for name, _ in cell.named_parameters()]

    def run(x_in: torch.Tensor, *params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.func.functional_call(cell, dict(zip(names, params, strict=True)), (x_in, torch.tensor(lengths)))

    inputs = (x.requires_grad_(), *(p.detach().clone().requires_grad_() for p in cell.parameters()))
    assert torch.autograd.gradcheck(run, inputs, eps=1e-6, atol=1e-7)


def _outputs_and_grads(
    cell: PeepholeLSTM, forward, x: torch.Tensor, lengths: torch.Tensor, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]:
    """H, h_last and the gradients of a loss on both w.r.t. x and every parameter."""
    generator = torch.Generator().manual_seed(seed)
    batch, steps, d = x.shape[0], x.shape[1], cell.hidden_size
    weights_h = torch.randn(batch, steps, d, generator=generator, dtype=torch.float64).to(x.dtype)
    weights_last = torch.randn(batch, d, generator=generator, dtype=torch.float64).to(x.dtype)
    x_in = x.clone().requires_grad_()
    hidden, h_last = forward(x_in, lengths)
    loss = (hidden * weights_h).sum() + (h_last * weights_last).sum()
    return hidden.detach(), h_last.detach(), torch.autograd.grad(loss, [x_in, *cell.parameters()])


@pytest.mark.parametrize("case", KERNEL_CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_matches_plain_autograd_outputs_and_gradients(dtype: torch.dtype, case: str, use_kernel) -> None:
    cell, x, lengths = _variable_batch(dtype, hidden=16, seed=1)
    use_kernel(cell, case)
    hidden, h_last, grads = _outputs_and_grads(cell, cell.forward, x, lengths)
    ref_hidden, ref_last, ref_grads = _outputs_and_grads(cell, cell.forward_reference, x, lengths)
    atol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(hidden, ref_hidden, rtol=0, atol=atol)
    torch.testing.assert_close(h_last, ref_last, rtol=0, atol=atol)
    assert torch.all(hidden[2, 1:] == 0) and torch.all(hidden[:, 5] == 0)  # padded steps output exactly 0
    for name, grad, ref in zip(["x", *(n for n, _ in cell.named_parameters())], grads, ref_grads, strict=True):
        torch.testing.assert_close(grad, ref, rtol=1e-5, atol=atol, msg=lambda m, name=name: f"{name}: {m}")
    assert torch.all(grads[0][2, 1:] == 0)  # padded inputs get no gradient


# (batch, steps, input, hidden, lengths or None for all full): batch 1, one step, the configs'
# hidden sizes (tiny 16, default 64, paper 128), unsorted variable lengths with padding.
_SHAPES = [
    (1, 1, 3, 4, None),
    (1, 9, 5, 16, None),
    (4, 1, 3, 8, None),
    (6, 7, 4, 64, [7, 2, 5, 1, 7, 3]),
    (3, 5, 8, 128, [2, 5, 4]),
    (8, 12, 16, 64, None),
]


@pytest.mark.parametrize("case", ["compiled", "compiled-aten"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", _SHAPES, ids=[f"b{s[0]}-t{s[1]}-f{s[2]}-d{s[3]}" for s in _SHAPES])
def test_compiled_matches_python_reference_on_shapes(shape, dtype: torch.dtype, case: str, use_kernel) -> None:
    """Outputs and the gradients of x, weights, peephole weights and bias, within float rounding."""
    batch, steps, n_inputs, d, lengths = shape
    torch.manual_seed(batch * 100 + steps)
    cell = use_kernel(PeepholeLSTM(n_inputs, d).to(dtype), case)
    with torch.no_grad():
        for parameter in cell.parameters():
            parameter.uniform_(-0.6, 0.6)
    x = torch.randn(batch, steps, n_inputs, dtype=dtype)
    lengths = torch.tensor(lengths if lengths is not None else [steps] * batch)
    got = _outputs_and_grads(cell, cell.forward, x, lengths)
    want = _outputs_and_grads(cell, cell.forward_reference, x, lengths)
    atol = 1e-5 if dtype == torch.float32 else 1e-10
    names = ["H", "h_last", *(f"grad {n}" for n in ["x", *(n for n, _ in cell.named_parameters())])]
    for name, a, b in zip(names, [got[0], got[1], *got[2]], [want[0], want[1], *want[2]], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=atol, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("case", KERNEL_CASES)
def test_fused_backward_twice_and_same_seed_are_identical(case: str, use_kernel) -> None:
    """retain_graph backward reuses intact saved tensors; same seed -> bitwise equal results on CPU."""
    runs = []
    for _ in range(2):
        cell, x, lengths = _variable_batch(torch.float32, hidden=8, seed=2)
        use_kernel(cell, case)
        hidden, h_last = cell(x, lengths)
        loss = hidden.pow(2).sum() + h_last.sum()
        first = torch.autograd.grad(loss, list(cell.parameters()), retain_graph=True)
        second = torch.autograd.grad(loss, list(cell.parameters()))
        for a, b in zip(first, second, strict=True):
            assert torch.equal(a, b)
        runs.append((hidden.detach(), first))
    assert torch.equal(runs[0][0], runs[1][0])
    for a, b in zip(runs[0][1], runs[1][1], strict=True):
        assert torch.equal(a, b)


def test_kernel_env_var_switches_the_compiled_kernel_off(monkeypatch, caplog) -> None:
    """VIDEMOTION_PEEPHOLE=python overrides kernel="compiled", builds nothing and says so once."""
    monkeypatch.setattr(peephole_kernel, "_warned", set())
    monkeypatch.setattr(peephole_kernel, "load_extension", lambda: pytest.fail("must not build"))
    monkeypatch.setenv(peephole.KERNEL_ENV, "python")
    cell, x, lengths = _variable_batch(torch.float64, hidden=4, seed=4)
    cell.kernel = "compiled"
    with caplog.at_level("WARNING", logger="videmotion.peephole"):
        hidden, h_last = cell(x, lengths)
        cell(x, lengths)
    warnings = [r.getMessage() for r in caplog.records if r.name == "videmotion.peephole"]
    assert len(warnings) == 1 and "VIDEMOTION_PEEPHOLE=python" in warnings[0]
    ref_hidden, ref_last = cell.forward_reference(x, lengths)
    torch.testing.assert_close(hidden, ref_hidden, rtol=0, atol=1e-12)
    torch.testing.assert_close(h_last, ref_last, rtol=0, atol=1e-12)
    monkeypatch.setenv(peephole.KERNEL_ENV, "fast")
    with pytest.raises(ValueError, match="unknown peephole LSTM kernel 'fast'"):
        cell(x, lengths)
    with pytest.raises(ValueError, match="unknown peephole LSTM kernel"):
        PeepholeLSTM(3, 4, kernel="fast")


def test_each_torch_installation_gets_its_own_kernel_build(monkeypatch, tmp_path) -> None:
    """The build's commands name one environment's torch headers and libraries: two virtual
    environments with the same torch must not share (and rebuild in turn) one build folder."""
    here = peephole_kernel._extension_name()
    assert here == peephole_kernel._extension_name()  # stable within an environment
    monkeypatch.setattr(torch, "__file__", str(tmp_path / "other-venv" / "torch" / "__init__.py"))
    assert peephole_kernel._extension_name() != here


def test_failed_build_falls_back_to_python_with_one_warning(monkeypatch, caplog) -> None:
    """A build that fails: "auto" warns once with the reason and runs the Python recurrence
    (same numbers), the failure is not retried, and "compiled" raises."""
    monkeypatch.delenv(peephole.KERNEL_ENV, raising=False)
    monkeypatch.setattr(peephole_kernel, "_extension", None)
    monkeypatch.setattr(peephole_kernel, "_extension_error", None)
    monkeypatch.setattr(peephole_kernel, "_warned", set())
    attempts = []

    def failing_build():
        attempts.append(1)
        raise OSError("no C++ compiler found (simulated)")

    monkeypatch.setattr(peephole_kernel, "_build_and_load", failing_build)
    cell, x, lengths = _variable_batch(torch.float64, hidden=4, seed=5)
    with caplog.at_level("WARNING", logger="videmotion.peephole"):
        hidden, h_last = cell(x, lengths)
        cell(x, lengths)
    warnings = [r.getMessage() for r in caplog.records if r.name == "videmotion.peephole"]
    assert len(warnings) == 1 and "no C++ compiler found (simulated)" in warnings[0] and "Python" in warnings[0]
    assert len(attempts) == 1 and peephole.resolve_kernel("auto") == "python"
    ref_hidden, ref_last = cell.forward_reference(x, lengths)
    torch.testing.assert_close(hidden, ref_hidden, rtol=0, atol=1e-12)
    torch.testing.assert_close(h_last, ref_last, rtol=0, atol=1e-12)
    cell.kernel = "compiled"
    with pytest.raises(RuntimeError, match="compiled kernel is unavailable"):
        cell(x, lengths)


def test_temporal_training_uses_the_compiled_kernel_by_default(monkeypatch) -> None:
    """The classifiers' LSTM is on kernel="auto", which runs the C++ recurrence when it builds."""
    monkeypatch.delenv(peephole.KERNEL_ENV, raising=False)
    _compiled_or_skip()
    calls = []
    original = peephole_kernel._CompiledRecurrence.apply
    monkeypatch.setattr(peephole_kernel._CompiledRecurrence, "apply", lambda *a: calls.append(1) or original(*a))
    model = LSTMClassifier(4, 4, 3)
    assert model.lstm.kernel == "auto" and AttentionLSTMClassifier(4, 4, 3).lstm.kernel == "auto"
    train_temporal(model, _burst_set(12, seed=10), None, params={"max_epochs": 1}, seed=0, device="cpu")
    assert calls
