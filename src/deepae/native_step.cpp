// The fused engine's step (deepae/engine.py) in C++, compiled on first use by
// deepae/native.py. Why by hand: at the article's sizes (batch 32, 784 pixels) a step is
// ~30 calls into PyTorch of a few microseconds each, and from Python each call costs more
// in argument parsing than it does in arithmetic; the BCE loss and its gradient take ~11
// passes over the output there. Here the same ATen calls are made from C++, and the loss
// is one vectorised pass: the article's step ~1.4x faster (docs/benchmarks.md).
//
// What it computes is `FusedDenseEngine.loss_and_grad` in float32 on the CPU (BCE, or MSE
// with a sigmoid or linear output); tests/test_native.py checks it against that and
// against autograd. `Step.train` is a whole training step (deepae/native_train.py): the
// batch's gather, that, and the optimizer's fused Adam kernel, in one call from Python.
#include <torch/extension.h>

#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace {

using at::Tensor;
using Vec = at::vec::Vectorized<float>;
// IEEE floats: a double past float's range converts to +-inf (Step::run's loss).
static_assert(std::numeric_limits<float>::is_iec559, "IEEE 754 float needed");

// Activation codes, as deepae/native.py numbers them.
enum Act : int64_t { kLinear = 0, kRelu = 1, kSigmoid = 2, kTanh = 3 };

// Lanes multiply up to this many numbers in [0.5, 1] before one log: their product stays
// >= 2**-96, a normal float (>= 2**-126), and its rounding (96 x 6e-8) is below that of
// a float32 sum of the logs (deepae/losses.py does the same with 112-pixel chunks).
constexpr int kLogChunk = 96;

// One row of BCE(sigmoid(l), x) = relu(l) - log(max(y, 1 - y)) - x l, y = sigmoid(l);
// writes g = (y - x) * scale and returns the row's summed loss.
double bce_row(const float* l, const float* x, float* g, int64_t n, float scale) {
  const Vec one(1.f), zero(0.f), sc(scale);
  Vec fit_sum(0.f), prod(1.f);
  double log_sum = 0.0;
  auto flush_logs = [&](const Vec& p) {
    float lanes[Vec::size()];
    p.store(lanes);
    for (float v : lanes) log_sum += std::log(v);
  };
  int64_t i = 0;
  int chunk = 0;
  for (; i + Vec::size() <= n; i += Vec::size()) {
    const Vec lv = Vec::loadu(l + i), xv = Vec::loadu(x + i);
    const Vec y = one / (one + lv.neg().exp());  // torch.sigmoid's own formula
    prod = prod * at::vec::maximum(y, one - y);
    if (++chunk == kLogChunk) {
      flush_logs(prod);
      prod = one;
      chunk = 0;
    }
    // relu(l) - x l per pixel (>= 0), then summed: kept apart, the sums of relu(l) and of
    // x l cancel where the images are near 1 and the model fits them (deepae/losses.py).
    fit_sum = fit_sum + at::vec::fmadd(xv.neg(), lv, at::vec::maximum(lv, zero));
    ((y - xv) * sc).store(g + i);
  }
  flush_logs(prod);
  float lanes[Vec::size()];
  double total = 0.0;
  fit_sum.store(lanes);
  for (float v : lanes) total += v;
  for (; i < n; ++i) {  // the row's last n % lanes pixels
    const float y = 1.f / (1.f + std::exp(-l[i]));
    log_sum += std::log(std::max(y, 1.f - y));
    total += std::fma(-x[i], l[i], std::max(l[i], 0.f));
    g[i] = (y - x[i]) * scale;
  }
  return total - log_sum;
}

// MSE(o, x) with o = sigmoid(l) (`sigmoid`) or o = l: writes g = d/dl (o - x)^2 * scale
// and returns the row's summed squared error.
double mse_row(const float* l, const float* x, float* g, int64_t n, float scale,
               bool sigmoid) {
  const Vec one(1.f), twice(2.f * scale);
  Vec squares(0.f);
  int64_t i = 0;
  for (; i + Vec::size() <= n; i += Vec::size()) {
    const Vec lv = Vec::loadu(l + i);
    const Vec out = sigmoid ? one / (one + lv.neg().exp()) : lv;
    const Vec diff = out - Vec::loadu(x + i);
    squares = at::vec::fmadd(diff, diff, squares);
    (sigmoid ? out * (one - out) * diff * twice : diff * twice).store(g + i);
  }
  float lanes[Vec::size()];
  squares.store(lanes);
  double total = 0.0;
  for (float v : lanes) total += v;
  for (; i < n; ++i) {
    const float out = sigmoid ? 1.f / (1.f + std::exp(-l[i])) : l[i];
    const float diff = out - x[i];
    total += diff * diff;
    g[i] = sigmoid ? out * (1.f - out) * diff * (2.f * scale) : diff * (2.f * scale);
  }
  return total;
}

// The loss at the output, as deepae/native.py numbers them: BCE with a sigmoid output,
// MSE with a sigmoid output, MSE with a linear output.
enum Loss : int64_t { kBce = 0, kMseSigmoid = 1, kMseLinear = 2 };

// The summed loss over logits (B, D); g (B, D) gets its gradient times `scale`. Rows run
// in parallel on PyTorch's threads when there is enough work; each row's sum is kept
// apart and added in order, so the result does not depend on the thread count.
double loss_sum_and_grad(int64_t loss, const Tensor& logits, const Tensor& x, Tensor& g,
                         float scale, std::vector<double>& rows) {
  const int64_t batch = logits.size(0), width = logits.size(1);
  const float* l = logits.data_ptr<float>();
  const float* xp = x.data_ptr<float>();
  float* gp = g.data_ptr<float>();
  rows.assign(batch, 0.0);
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(width, 1));
  at::parallel_for(0, batch, grain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t at = r * width;
      rows[r] = loss == kBce
                    ? bce_row(l + at, xp + at, gp + at, width, scale)
                    : mse_row(l + at, xp + at, gp + at, width, scale, loss == kMseSigmoid);
    }
  });
  double total = 0.0;
  for (double v : rows) total += v;
  return total;
}

void forward_act(Tensor& h, int64_t act) {
  switch (act) {
    case kRelu: h.relu_(); break;
    case kSigmoid: h.sigmoid_(); break;
    case kTanh: h.tanh_(); break;
    default: break;
  }
}

// dL/dx from dL/dy (g, in place) and the activation's output y.
void backward_act(Tensor& g, const Tensor& out, int64_t act) {
  switch (act) {
    case kRelu: at::threshold_backward_out(g, g, out, 0); break;
    case kSigmoid: at::sigmoid_backward_out(g, g, out); break;
    case kTanh: at::tanh_backward_out(g, g, out); break;
    default: break;
  }
}

// One batch size's step over the engine's own tensors (views of its flat parameters,
// gradients and buffers), handed over once, so a call converts nothing but x.
class Step {
 public:
  Step(std::vector<Tensor> w, std::vector<Tensor> w_t, std::vector<Tensor> b,
       std::vector<Tensor> gw, std::vector<Tensor> gb, std::vector<Tensor> acts,
       std::vector<Tensor> grads, std::vector<Tensor> grads_t, std::vector<int64_t> act,
       int64_t loss, double scale)
      : w_(std::move(w)), w_t_(std::move(w_t)), b_(std::move(b)), gw_(std::move(gw)),
        gb_(std::move(gb)), acts_(std::move(acts)), grads_(std::move(grads)),
        grads_t_(std::move(grads_t)), act_(std::move(act)), loss_(loss), scale_(scale) {
    const size_t n = w_.size();
    TORCH_CHECK(n > 0 && w_t_.size() == n && b_.size() == n && gw_.size() == n &&
                    gb_.size() == n && acts_.size() == n && grads_.size() == n &&
                    grads_t_.size() == n && act_.size() == n,
                "Step: one tensor of each kind per layer");
    TORCH_CHECK(loss_ >= kBce && loss_ <= kMseLinear, "Step: unknown loss ", loss_);
    // (B, D) float32, also in mixed precision: `train` gathers the images' rows here
    batch_ = at::empty(acts_.back().sizes(), acts_.back().options().dtype(at::kFloat));
  }

  // Mixed precision (deepae.precision's mixed_bfloat16, as the engine's Python step runs
  // it): the weights `low` are cast from `flat` once a step, the input into x_low; products
  // and activations are in low's dtype; the loss is computed in float32 on a copy of the
  // logits (logits32, its gradient in g32) and the gradient lands in float32 `grad` from
  // low_grad. Without this call the step is float32 throughout.
  void set_mixed(const Tensor& flat, const Tensor& low, const Tensor& grad,
                 const Tensor& low_grad, const Tensor& x_low, const Tensor& logits32,
                 const Tensor& g32) {
    const auto& out = acts_.back();
    TORCH_CHECK(flat.scalar_type() == at::kFloat && grad.scalar_type() == at::kFloat &&
                    low.scalar_type() == out.scalar_type() &&
                    low_grad.scalar_type() == out.scalar_type() &&
                    x_low.scalar_type() == out.scalar_type() && x_low.sizes() == out.sizes() &&
                    logits32.scalar_type() == at::kFloat && logits32.sizes() == out.sizes() &&
                    g32.scalar_type() == at::kFloat && g32.sizes() == out.sizes() &&
                    logits32.is_contiguous() && g32.is_contiguous(),
                "Step.set_mixed: float32 flat, grad, logits32, g32 and the low dtype's "
                "low, low_grad, x_low, shaped like the output");
    flat_ = flat;
    low_ = low;
    grad32_ = grad;
    low_grad_ = low_grad;
    x_low_ = x_low;
    logits32_ = logits32;
    g32_ = g32;
  }

  // What `train` reads its batches from, for one epoch: images (N, D) float32 and order
  // (M,) int64, positions in images. Checked here, once, so that `train` copies only rows
  // that exist.
  void set_data(const Tensor& images, const Tensor& order) {
    TORCH_CHECK(images.scalar_type() == at::kFloat && images.is_contiguous() &&
                    images.dim() == 2 && images.size(1) == batch_.size(1),
                "Step.set_data: images must be contiguous float32 (N, D) as the model's D");
    TORCH_CHECK(order.scalar_type() == at::kLong && order.is_contiguous() && order.dim() == 1,
                "Step.set_data: order must be a contiguous int64 vector");
    TORCH_CHECK(order.numel() == 0 ||
                    (order.min().item<int64_t>() >= 0 &&
                     order.max().item<int64_t>() < images.size(0)),
                "Step.set_data: order holds a position outside images");
    images_ = images;
    order_ = order;
  }

  // Adam's tensors (torch.optim's state): the flat parameter, its gradient, the two
  // moments and the step count (a float32 0-d tensor); `adamw`: decoupled weight decay.
  void set_adam(const Tensor& param, const Tensor& grad, const Tensor& exp_avg,
                const Tensor& exp_avg_sq, const Tensor& count, bool adamw) {
    param_ = param;
    grad_ = grad;
    exp_avg_ = exp_avg;
    exp_avg_sq_ = exp_avg_sq;
    count_ = count;
    adamw_ = adamw;
  }

  // One whole training step on rows order[first : first + B] of the images: their copy
  // (what index_select does), `run`, then what deepae.engine.fused_adam_step does (the
  // step count += 1, then the fused kernel with these numbers). Returns the summed loss.
  Tensor train(int64_t first, double lr, double beta1, double beta2, double weight_decay,
               double eps) {
    const int64_t rows = batch_.size(0), width = batch_.size(1);
    TORCH_CHECK(images_.defined() && param_.defined(), "Step.train: set_data and set_adam first");
    TORCH_CHECK(first >= 0 && first + rows <= order_.numel(),
                "Step.train: rows ", first, "..", first + rows, " outside the order");
    const int64_t* idx = order_.data_ptr<int64_t>() + first;
    const float* src = images_.data_ptr<float>();
    float* dst = batch_.data_ptr<float>();
    for (int64_t r = 0; r < rows; ++r)
      std::memcpy(dst + r * width, src + idx[r] * width, width * sizeof(float));
    Tensor loss = run(batch_);
    count_.add_(1);
    if (adamw_)
      at::_fused_adamw_({param_}, {grad_}, {exp_avg_}, {exp_avg_sq_}, {}, {count_}, lr, beta1,
                        beta2, weight_decay, eps, /*amsgrad=*/false, /*maximize=*/false);
    else
      at::_fused_adam_({param_}, {grad_}, {exp_avg_}, {exp_avg_sq_}, {}, {count_}, lr, beta1,
                       beta2, weight_decay, eps, /*amsgrad=*/false, /*maximize=*/false);
    return loss;
  }

  // x: (B, D) float32, contiguous. Returns the summed loss (0-d float32); the gradient of
  // the mean loss is left in the engine's gradient views.
  Tensor run(const Tensor& x) {
    const Tensor& out = acts_.back();
    TORCH_CHECK(x.scalar_type() == at::kFloat && x.is_contiguous() && x.dim() == 2 &&
                    x.sizes() == out.sizes(),
                "Step.run: x must be a contiguous float32 tensor shaped like the output");
    const size_t n = w_.size();
    const bool mixed = low_.defined();
    if (mixed) {
      low_.copy_(flat_);  // the weights, cast once a step
      x_low_.copy_(x);
    }
    const Tensor& x_in = mixed ? x_low_ : x;
    Tensor h = x_in;
    for (size_t i = 0; i < n; ++i) {
      at::addmm_out(acts_[i], b_[i], h, w_t_[i]);
      forward_act(acts_[i], act_[i]);
      h = acts_[i];
    }
    const float scale = static_cast<float>(scale_);
    double loss;
    if (mixed) {
      loss = loss_sum_and_grad(loss_, logits32_.copy_(h), x, g32_, scale, rows_);
      grads_[n - 1].copy_(g32_);
    } else {
      loss = loss_sum_and_grad(loss_, h, x, grads_[n - 1], scale, rows_);
    }
    for (size_t i = n; i-- > 0;) {
      at::mm_out(gw_[i], grads_t_[i], i == 0 ? x_in : acts_[i - 1]);
      at::sum_out(gb_[i], grads_[i], 0);
      if (i > 0) {
        at::mm_out(grads_[i - 1], grads_[i], w_[i]);
        backward_act(grads_[i - 1], acts_[i - 1], act_[i - 1]);
      }
    }
    if (mixed) grad32_.copy_(low_grad_);
    // Rounded to float32 here (beyond its range: inf, as the Python step's float32 sum
    // gives): a Scalar holding the double is range-checked, and a sum past 3.4e38 would
    // raise "value cannot be converted to type float without overflow" instead of
    // reaching the trainer's divergence check.
    return at::scalar_tensor(static_cast<float>(loss), at::kFloat);
  }

 private:
  std::vector<Tensor> w_, w_t_, b_, gw_, gb_, acts_, grads_, grads_t_;
  std::vector<int64_t> act_;
  int64_t loss_;
  double scale_;
  std::vector<double> rows_;
  Tensor batch_, images_, order_, param_, grad_, exp_avg_, exp_avg_sq_, count_;
  Tensor flat_, low_, grad32_, low_grad_, x_low_, logits32_, g32_;  // set_mixed's
  bool adamw_ = false;
};

// The loss alone, for tests and benchmarks: (loss, logits, x, g, scale) -> summed loss.
double output_loss(int64_t loss, const Tensor& logits, const Tensor& x, Tensor& g,
                   double scale) {
  TORCH_CHECK(logits.scalar_type() == at::kFloat && x.scalar_type() == at::kFloat &&
                  g.scalar_type() == at::kFloat && logits.is_contiguous() &&
                  x.is_contiguous() && g.is_contiguous() && logits.dim() == 2 &&
                  x.sizes() == logits.sizes() && g.sizes() == logits.sizes(),
              "output_loss: contiguous float32 (B, D) tensors of one shape");
  TORCH_CHECK(loss >= kBce && loss <= kMseLinear, "output_loss: unknown loss ", loss);
  std::vector<double> rows;
  return loss_sum_and_grad(loss, logits, x, g, static_cast<float>(scale), rows);
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  py::class_<Step>(m, "Step", py::module_local())  // a rebuilt copy may load beside it
      .def(py::init<std::vector<Tensor>, std::vector<Tensor>, std::vector<Tensor>,
                    std::vector<Tensor>, std::vector<Tensor>, std::vector<Tensor>,
                    std::vector<Tensor>, std::vector<Tensor>, std::vector<int64_t>, int64_t,
                    double>())
      .def("run", &Step::run)
      .def("set_data", &Step::set_data)
      .def("set_adam", &Step::set_adam)
      .def("set_mixed", &Step::set_mixed)
      .def("train", &Step::train);
  m.def("output_loss", &output_loss);
}
