// The peephole LSTM recurrence of eq. 1 (videmotion.peephole) as one C++ call per sequence
// batch: the forward over all time steps and its hand-written backward (BPTT).
//
// Built at first use by torch.utils.cpp_extension.load() (see videmotion/peephole_kernel.py) and
// wrapped there in a torch.autograd.Function; the Python recurrence stays the fallback and
// the reference.
//
// Two implementations of the per-step elementwise work, same results up to float rounding:
// * generic: ATen ops only, so it runs on any device ATen dispatches to (CPU, CUDA, ...) and
//   any floating dtype;
// * CPU fused (float32/float64 CPU tensors, when asked for with fused=true): per step 3 plain
//   loops for the arithmetic and 2 of ATen's vectorised sigmoid calls instead of ~10 ATen
//   calls, whose fixed cost per call dominates at these sizes; the backward step is one loop.
//   Plain C++ with no CPU-specific flags, so one build serves every CPU of an architecture.
// The matrix products are ATen's in both. Everything is deterministic on CPU.
//
// Layout (the same as the Python recurrence, _PeepholeRecurrence): inputs are time-major,
// x (T, B, F), with the batch sorted by length, longest first, so that at step t the
// sequences still running are the first active[t] rows (active non-increasing, >= 1).
// Finished rows are not computed: their state is kept and their output is 0.
//
// Gates are stacked i, f, g (the cell candidate), o along the last axis of size 4d:
//   i = sigmoid(z_i + p_i * c_{t-1}),  f = sigmoid(z_f + p_f * c_{t-1}),  g = tanh(z_g)
//   c_t = f * c_{t-1} + i * g,  o = sigmoid(z_o + p_o * c_t),  h_t = o * tanh(c_t)
// with z = W_x x_t + b + W_h h_{t-1}.

#include <torch/extension.h>

#include <cstdint>
#include <vector>

namespace {

using at::Tensor;

// ----------------------------------------------------------------------------- CPU fused steps
//
// Arithmetic loops over the rows of one step, plain C++ that compilers vectorise for the base
// instruction set. The transcendental functions stay ATen's (its vectorised sigmoid, picked at
// run time for the CPU): tanh(x) = 2 sigmoid(2 x) - 1, with the g rows of the weights scaled
// by 2 beforehand (exact in floating point), so that one sigmoid call activates i, f and g.

// Before the first sigmoid: the bias and the peephole terms of i and f. z (n, 4d) rows,
// c_prev (n, d), bias (4d).
template <typename T>
void add_bias_and_peepholes(T* __restrict z, const T* __restrict c_prev, const T* __restrict bias,
                            const T* __restrict p_i, const T* __restrict p_f, int64_t n, int64_t d) {
  for (int64_t r = 0; r < n; ++r) {
    T* __restrict zi = z + r * 4 * d;
    T* __restrict zf = z + r * 4 * d + d;
    T* __restrict zgo = z + r * 4 * d + 2 * d;
    const T* __restrict cp = c_prev + r * d;
    for (int64_t k = 0; k < d; ++k) {
      zi[k] += bias[k] + p_i[k] * cp[k];
      zf[k] += bias[d + k] + p_f[k] * cp[k];
    }
    for (int64_t k = 0; k < 2 * d; ++k) {
      zgo[k] += bias[2 * d + k];
    }
  }
}

// After it (i, f, sigmoid(2 z_g) in z): g = tanh(z_g), c_t = f c_{t-1} + i g, and into
// scratch (n, 2d) the output gate's pre-activation (with its peephole on c_t) and 2 c_t, for
// the second sigmoid.
template <typename T>
void update_cells(T* __restrict z, const T* __restrict c_prev, T* __restrict c, T* __restrict scratch,
                  const T* __restrict p_o, int64_t n, int64_t d) {
  for (int64_t r = 0; r < n; ++r) {
    const T* __restrict zi = z + r * 4 * d;
    const T* __restrict zf = z + r * 4 * d + d;
    T* __restrict zg = z + r * 4 * d + 2 * d;
    const T* __restrict zo = z + r * 4 * d + 3 * d;
    const T* __restrict cp = c_prev + r * d;
    T* __restrict cr = c + r * d;
    T* __restrict so = scratch + r * 2 * d;
    T* __restrict sc = scratch + r * 2 * d + d;
    for (int64_t k = 0; k < d; ++k) {
      const T g = T(2) * zg[k] - T(1);
      const T cn = zf[k] * cp[k] + zi[k] * g;
      zg[k] = g;
      cr[k] = cn;
      so[k] = zo[k] + p_o[k] * cn;
      sc[k] = T(2) * cn;
    }
  }
}

// After the second sigmoid (o and sigmoid(2 c_t) in scratch): o into z, tanh(c_t) into tc,
// h_t = o tanh(c_t).
template <typename T>
void update_hidden(T* __restrict z, const T* __restrict scratch, T* __restrict tc, T* __restrict h, int64_t n,
                   int64_t d) {
  for (int64_t r = 0; r < n; ++r) {
    T* __restrict zo = z + r * 4 * d + 3 * d;
    const T* __restrict so = scratch + r * 2 * d;
    const T* __restrict sc = scratch + r * 2 * d + d;
    T* __restrict tcr = tc + r * d;
    T* __restrict hr = h + r * d;
    for (int64_t k = 0; k < d; ++k) {
      const T t = T(2) * sc[k] - T(1);
      zo[k] = so[k];
      tcr[k] = t;
      hr[k] = so[k] * t;
    }
  }
}

// One backward step for the first n rows, from the saved gates (n, 4d), c_{t-1} and tanh(c_t)
// (n, d) and dh_t (n, d): writes dz (n, 4d) and turns dc (n, d) from dc_{t+1} carried into
// c_t into the same for c_{t-1}.
template <typename T>
void backward_rows(const T* __restrict gates, const T* __restrict c_prev, const T* __restrict tc,
                   const T* __restrict dh, T* __restrict dc, T* __restrict dz, const T* __restrict p_i,
                   const T* __restrict p_f, const T* __restrict p_o, int64_t n, int64_t d) {
  for (int64_t r = 0; r < n; ++r) {
    const T* __restrict gi = gates + r * 4 * d;
    const T* __restrict gf = gi + d;
    const T* __restrict gg = gi + 2 * d;
    const T* __restrict go = gi + 3 * d;
    T* __restrict dzi = dz + r * 4 * d;
    T* __restrict dzf = dz + r * 4 * d + d;
    T* __restrict dzg = dz + r * 4 * d + 2 * d;
    T* __restrict dzo = dz + r * 4 * d + 3 * d;
    const T* __restrict cp = c_prev + r * d;
    const T* __restrict tcr = tc + r * d;
    const T* __restrict dhr = dh + r * d;
    T* __restrict dcr = dc + r * d;
    for (int64_t k = 0; k < d; ++k) {
      const T i = gi[k], f = gf[k], g = gg[k], o = go[k], t = tcr[k], dhk = dhr[k];
      const T d_o = dhk * t * o * (T(1) - o);
      const T d_c = dcr[k] + dhk * o * (T(1) - t * t) + d_o * p_o[k];
      const T d_i = d_c * g * i * (T(1) - i);
      const T d_f = d_c * cp[k] * f * (T(1) - f);
      dzi[k] = d_i;
      dzf[k] = d_f;
      dzg[k] = d_c * i * (T(1) - g * g);
      dzo[k] = d_o;
      dcr[k] = d_c * f + d_i * p_i[k] + d_f * p_f[k];
    }
  }
}

bool use_cpu_fused(const Tensor& x, bool fused) {
  return fused && x.device().is_cpu() && (x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble);
}

void check_active(const std::vector<int64_t>& active, int64_t steps, int64_t batch) {
  TORCH_CHECK(static_cast<int64_t>(active.size()) == steps, "active must have one entry per step (",
              steps, "), got ", active.size());
  int64_t previous = batch;
  for (const int64_t n : active) {
    TORCH_CHECK(n >= 1 && n <= previous, "active must be non-increasing with values in [1, ", batch, "]");
    previous = n;
  }
}

// Forward over all steps. Returns the buffers the backward needs:
//   hiddens (T + 1, B, d): h_0 = 0, then h_t (0 for finished rows)
//   cells (T + 1, B, d):   c_0 = 0, then c_t (0 for finished rows)
//   gates (T, B, 4d):      the activated i, f, g, o
//   tanh_cells (T, B, d):  tanh(c_t)
std::vector<Tensor> peephole_forward(const Tensor& x, const Tensor& weight_x, const Tensor& bias,
                                     const Tensor& weight_h, const Tensor& peephole_i,
                                     const Tensor& peephole_f, const Tensor& peephole_o,
                                     const std::vector<int64_t>& active, bool fused) {
  TORCH_CHECK(x.dim() == 3, "x must be (T, B, F)");
  const int64_t steps = x.size(0), batch = x.size(1), n_inputs = x.size(2);
  const int64_t d = weight_h.size(1);
  TORCH_CHECK(weight_x.sizes() == at::IntArrayRef({4 * d, n_inputs}), "weight_x must be (4d, F)");
  TORCH_CHECK(weight_h.sizes() == at::IntArrayRef({4 * d, d}), "weight_h must be (4d, d)");
  TORCH_CHECK(bias.numel() == 4 * d && peephole_i.numel() == d && peephole_f.numel() == d &&
                  peephole_o.numel() == d,
              "bias must have 4d and the peephole weights d entries");
  check_active(active, steps, batch);

  // Input projections of every step in one matrix product; gates[t] is then overwritten step
  // by step with the activated gates.
  const bool cpu_fused = use_cpu_fused(x, fused);
  Tensor w_x = weight_x, b = bias.reshape({4 * d}), w_h = weight_h;
  if (cpu_fused) {  // the g rows scaled by 2 (exact): one sigmoid then gives i, f and sigmoid(2 z_g)
    const Tensor scale = at::ones({4 * d, 1}, x.options());
    scale.narrow(0, 2 * d, d).fill_(2);
    w_x = weight_x * scale;
    b = b * scale.view({4 * d});
    w_h = weight_h * scale;
  }
  // (The fused path adds the bias in its first loop: no pass over the whole buffer.)
  const Tensor x_flat = x.reshape({steps * batch, n_inputs});
  const Tensor gates = (cpu_fused ? at::mm(x_flat, w_x.t()) : at::addmm(b, x_flat, w_x.t())).view({steps, batch, 4 * d});
  // Only h_0 = c_0 = 0 and the rows of finished sequences need zeros; the rest is written below.
  const Tensor cells = at::empty({steps + 1, batch, d}, x.options());
  const Tensor hiddens = at::empty({steps + 1, batch, d}, x.options());
  const Tensor tanh_cells = at::empty({steps, batch, d}, x.options());
  cells.select(0, 0).zero_();
  hiddens.select(0, 0).zero_();
  const Tensor weight_h_t = w_h.t().contiguous();  // (d, 4d): the faster layout for the per-step product
  const Tensor p_i = peephole_i.reshape({d}).contiguous(), p_f = peephole_f.reshape({d}).contiguous(),
               p_o = peephole_o.reshape({d}).contiguous();
  const std::vector<Tensor> z_all = gates.unbind(0), h_all = hiddens.unbind(0);
  auto finish_rows = [&](int64_t t, int64_t n) {  // finished sequences: state kept out of the computation, output 0
    for (const Tensor& buffer : {cells.select(0, t + 1), hiddens.select(0, t + 1), tanh_cells.select(0, t)}) {
      buffer.narrow(0, n, batch - n).zero_();
    }
  };

  if (cpu_fused) {
    const Tensor bias_scaled = b.contiguous();
    const Tensor scratch = at::empty({batch, 2 * d}, x.options());
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "peephole_forward", [&] {
      scalar_t* z_ptr = gates.data_ptr<scalar_t>();
      scalar_t* c_ptr = cells.data_ptr<scalar_t>();
      scalar_t* h_ptr = hiddens.data_ptr<scalar_t>();
      scalar_t* tc_ptr = tanh_cells.data_ptr<scalar_t>();
      const scalar_t* pi = p_i.data_ptr<scalar_t>();
      const scalar_t* pf = p_f.data_ptr<scalar_t>();
      const scalar_t* po = p_o.data_ptr<scalar_t>();
      const scalar_t* bs = bias_scaled.data_ptr<scalar_t>();
      scalar_t* s_ptr = scratch.data_ptr<scalar_t>();
      const int64_t plane = batch * d;
      for (int64_t t = 0; t < steps; ++t) {
        const int64_t n = active[t];
        Tensor z = z_all[t], s = scratch;
        if (n < batch) {
          finish_rows(t, n);
          z = z.narrow(0, 0, n);
          s = s.narrow(0, 0, n);
        }
        z.addmm_(n < batch ? h_all[t].narrow(0, 0, n) : h_all[t], weight_h_t);
        scalar_t* zt = z_ptr + t * 4 * plane;
        const scalar_t* c_prev = c_ptr + t * plane;
        add_bias_and_peepholes<scalar_t>(zt, c_prev, bs, pi, pf, n, d);
        z.narrow(1, 0, 3 * d).sigmoid_();  // i, f, sigmoid(2 z_g)
        update_cells<scalar_t>(zt, c_prev, c_ptr + (t + 1) * plane, s_ptr, po, n, d);
        s.sigmoid_();  // o, sigmoid(2 c_t)
        update_hidden<scalar_t>(zt, s_ptr, tc_ptr + t * plane, h_ptr + (t + 1) * plane, n, d);
      }
    });
    return {hiddens, cells, gates, tanh_cells};
  }

  // Generic path: ATen ops on per-step views made once per buffer.
  const Tensor peephole_if = at::stack({p_i, p_f});  // (2, d)
  const Tensor gates4 = gates.view({steps, batch, 4, d});
  const std::vector<Tensor> z_if_all = gates4.narrow(2, 0, 2).unbind(0), i_all = gates4.select(2, 0).unbind(0),
                            f_all = gates4.select(2, 1).unbind(0), g_all = gates4.select(2, 2).unbind(0),
                            o_all = gates4.select(2, 3).unbind(0), c_all = cells.unbind(0),
                            c_u_all = cells.unsqueeze(2).unbind(0), tc_all = tanh_cells.unbind(0);
  for (int64_t t = 0; t < steps; ++t) {
    const int64_t n = active[t];
    Tensor z = z_all[t], z_if = z_if_all[t], i = i_all[t], f = f_all[t], g = g_all[t], o = o_all[t],
           c_prev = c_all[t], c_prev_u = c_u_all[t], c = c_all[t + 1], h_prev = h_all[t], h = h_all[t + 1],
           tc = tc_all[t];
    if (n < batch) {
      finish_rows(t, n);
      for (Tensor* view : {&z, &z_if, &i, &f, &g, &o, &c_prev, &c_prev_u, &c, &h_prev, &h, &tc}) {
        *view = view->narrow(0, 0, n);
      }
    }
    z.addmm_(h_prev, weight_h_t);
    z_if.addcmul_(c_prev_u, peephole_if).sigmoid_();  // i, f
    g.tanh_();
    at::mul_out(c, i, g).addcmul_(f, c_prev);  // c_t = f c_{t-1} + i g
    o.addcmul_(c, p_o).sigmoid_();             // the output gate peeks at the new c_t
    at::mul_out(h, o, at::tanh_out(tc, c));    // h_t = o tanh(c_t)
  }
  return {hiddens, cells, gates, tanh_cells};
}

// Backward (BPTT) from the gradients of H = hiddens[1:] (T, B, d), the only output (the
// caller's gather of h_last is differentiated by autograd and arrives here inside grad_hidden).
// Per step, with sigmoid' = s (1 - s) and tanh' = 1 - tanh^2:
//   dh_t   = grad_hidden[t] + dz_{t+1} W_h                    (one matrix product)
//   dz_o   = dh_t o (1 - o) tanh(c_t)
//   dc_t   = dc_{t+1} carry_{t+1} + dh_t o (1 - tanh^2 c_t) + dz_o p_o
//   dz_i   = dc_t i (1 - i) g,  dz_f = dc_t f (1 - f) c_{t-1},  dz_g = dc_t i (1 - g^2)
//   carry_t = f + i (1 - i) g p_i + f (1 - f) c_{t-1} p_f     (dc_t carry_t = dc_t f + dz_i p_i + dz_f p_f)
// The generic path computes every factor that does not depend on the incoming gradient for
// all steps at once beforehand (4 ATen ops per step remain); the CPU fused path does one loop
// per step. The weight gradients are then one matrix product each over all steps.
// Returns grad_x (undefined when not needed), grad_weight_x, grad_bias, grad_weight_h,
// grad_peephole_i, grad_peephole_f, grad_peephole_o.
std::vector<Tensor> peephole_backward(const Tensor& grad_hidden, const Tensor& x, const Tensor& weight_x,
                                      const Tensor& weight_h, const Tensor& peephole_i,
                                      const Tensor& peephole_f, const Tensor& peephole_o,
                                      const Tensor& hiddens, const Tensor& cells, const Tensor& gates,
                                      const Tensor& tanh_cells, const std::vector<int64_t>& active,
                                      bool needs_grad_x, bool fused) {
  const int64_t steps = gates.size(0), batch = gates.size(1), d = weight_h.size(1);
  TORCH_CHECK(grad_hidden.sizes() == at::IntArrayRef({steps, batch, d}), "grad_hidden must be (T, B, d)");
  check_active(active, steps, batch);
  const Tensor p_i = peephole_i.reshape({d}).contiguous(), p_f = peephole_f.reshape({d}).contiguous(),
               p_o = peephole_o.reshape({d}).contiguous();
  const Tensor c_prev = cells.narrow(0, 0, steps), c_now = cells.narrow(0, 1, steps);
  const Tensor grad_h = grad_hidden.contiguous().clone();  // dh_t accumulates the recurrent path
  const Tensor grad_gates = at::empty({steps, batch, 4 * d}, gates.options());  // rows of finished sequences: 0
  const Tensor grad_c = at::zeros({batch, d}, gates.options());
  const std::vector<Tensor> dz_all = grad_gates.unbind(0), dh_all = grad_h.unbind(0);
  // The recurrent path into step t: dh_t += dz_{t+1} W_h (the rows that ran at t + 1).
  auto add_recurrent = [&](int64_t t, int64_t n, int64_t n_next) {
    if (n < batch) {
      dz_all[t].narrow(0, n, batch - n).zero_();
    }
    if (n_next > 0) {
      const Tensor above = n_next == batch ? dz_all[t + 1] : dz_all[t + 1].narrow(0, 0, n_next);
      Tensor target = n_next == batch ? dh_all[t] : dh_all[t].narrow(0, 0, n_next);
      target.addmm_(above, weight_h);
    }
  };

  if (use_cpu_fused(gates, fused)) {
    AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "peephole_backward", [&] {
      const scalar_t* g_ptr = gates.data_ptr<scalar_t>();
      const scalar_t* c_ptr = cells.data_ptr<scalar_t>();
      const scalar_t* tc_ptr = tanh_cells.data_ptr<scalar_t>();
      const scalar_t* dh_ptr = grad_h.data_ptr<scalar_t>();
      scalar_t* dz_ptr = grad_gates.data_ptr<scalar_t>();
      scalar_t* dc_ptr = grad_c.data_ptr<scalar_t>();
      const int64_t plane = batch * d;
      int64_t n_next = 0;
      for (int64_t t = steps - 1; t >= 0; --t) {
        const int64_t n = active[t];
        add_recurrent(t, n, n_next);
        backward_rows<scalar_t>(g_ptr + t * 4 * plane, c_ptr + t * plane, tc_ptr + t * plane, dh_ptr + t * plane,
                                dc_ptr, dz_ptr + t * 4 * plane, p_i.data_ptr<scalar_t>(),
                                p_f.data_ptr<scalar_t>(), p_o.data_ptr<scalar_t>(), n, d);
        n_next = n;
      }
    });
  } else {
    const Tensor gates4 = gates.view({steps, batch, 4, d});
    const Tensor i = gates4.select(2, 0), f = gates4.select(2, 1), g = gates4.select(2, 2),
                 o = gates4.select(2, 3);
    // Step factors for all steps at once.
    const Tensor to_o = at::addcmul(o, o, o, -1).mul_(tanh_cells);
    const Tensor to_c = at::addcmul(o, o, tanh_cells * tanh_cells, -1).addcmul_(to_o, p_o);
    const Tensor ifg = gates4.narrow(2, 0, 3);
    const Tensor local = at::addcmul(ifg, ifg, ifg, -1);  // (T, B, 3, d), contiguous
    local.select(2, 0).mul_(g);
    local.select(2, 1).mul_(c_prev);
    Tensor local_g = local.select(2, 2);
    at::addcmul_out(local_g, i, i, g * g, -1);
    const Tensor carry = at::addcmul(f, local.select(2, 0), p_i).addcmul_(local.select(2, 1), p_f);

    const Tensor grad_c_u = grad_c.unsqueeze(1);
    const Tensor grad_gates4 = grad_gates.view({steps, batch, 4, d});
    const std::vector<Tensor> dz_ifg_all = grad_gates4.narrow(2, 0, 3).unbind(0),
                              dz_o_all = grad_gates4.select(2, 3).unbind(0), to_o_all = to_o.unbind(0),
                              to_c_all = to_c.unbind(0), local_all = local.unbind(0), carry_all = carry.unbind(0);
    int64_t n_next = 0;
    for (int64_t t = steps - 1; t >= 0; --t) {
      const int64_t n = active[t];
      add_recurrent(t, n, n_next);
      Tensor dh = dh_all[t], dz_ifg = dz_ifg_all[t], dz_o = dz_o_all[t], dc = grad_c, dc_u = grad_c_u,
             a_o = to_o_all[t], a_c = to_c_all[t], a_loc = local_all[t], a_carry = carry_all[t];
      if (n < batch) {  // rows >= n had finished: their dz is 0, their dc stays 0
        for (Tensor* view : {&dh, &dz_ifg, &dz_o, &dc, &dc_u, &a_o, &a_c, &a_loc, &a_carry}) {
          *view = view->narrow(0, 0, n);
        }
      }
      at::mul_out(dz_o, dh, a_o);
      dc.addcmul_(dh, a_c);
      at::mul_out(dz_ifg, dc_u, a_loc);
      dc.mul_(a_carry);
      n_next = n;
    }
  }

  const Tensor flat = grad_gates.view({steps * batch, 4 * d});
  Tensor grad_x;
  if (needs_grad_x) {
    grad_x = flat.mm(weight_x).view(x.sizes());
  }
  const Tensor grad_weight_x = flat.t().mm(x.reshape({steps * batch, x.size(2)}));
  const Tensor grad_weight_h = flat.t().mm(hiddens.narrow(0, 0, steps).reshape({steps * batch, d}));
  const Tensor grad_bias = flat.sum(0).view({weight_x.size(0)});
  const Tensor grad_gates4 = grad_gates.view({steps, batch, 4, d});
  const Tensor grad_peephole_i = (grad_gates4.select(2, 0) * c_prev).sum(at::IntArrayRef({0, 1}));
  const Tensor grad_peephole_f = (grad_gates4.select(2, 1) * c_prev).sum(at::IntArrayRef({0, 1}));
  const Tensor grad_peephole_o = (grad_gates4.select(2, 3) * c_now).sum(at::IntArrayRef({0, 1}));
  return {grad_x,
          grad_weight_x,
          grad_bias,
          grad_weight_h,
          grad_peephole_i.view(peephole_i.sizes()),
          grad_peephole_f.view(peephole_f.sizes()),
          grad_peephole_o.view(peephole_o.sizes())};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "Peephole LSTM (eq. 1) recurrence with a hand-written backward, from videmotion/csrc/peephole.cpp";
  m.def("forward", &peephole_forward, "Forward over all steps: hiddens, cells, gates, tanh_cells");
  m.def("backward", &peephole_backward, "BPTT: grads of x, weight_x, bias, weight_h, peephole_i/f/o");
}
