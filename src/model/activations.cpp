#include "model/activations.hpp"

#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include "model/activation_kernels.hpp"

namespace cocola::model {
namespace {

// A tensor whose elements fill one block of memory (any dimension order): the kernels run over it linearly.
bool fast_path(const at::Tensor& t) {
    return t.device().is_cpu() && t.scalar_type() == at::kFloat && t.is_non_overlapping_and_dense();
}

// Elements per task: large enough that thread start-up is amortised, small enough that the activations of
// one window (~1e5-1e6 elements) still spread over the threads.
constexpr int64_t kGrain = 1 << 15;

template <class F>
void over_elements(int64_t n, F&& f) {
    at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) { f(begin, end - begin); });
}

at::Tensor silu_values(const at::Tensor& x) {
    at::Tensor y = at::empty_like(x);  // same strides as x (dense, non-overlapping): index i is the same element
    const float* in = x.data_ptr<float>();
    float* out = y.data_ptr<float>();
    over_elements(x.numel(), [&](int64_t i, int64_t n) { kernels::silu(in + i, out + i, n); });
    return y;
}

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class SiluFunction : public torch::autograd::Function<SiluFunction> {
public:
    static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x) {
        ctx->save_for_backward({x});
        return silu_values(x);
    }

    static variable_list backward(AutogradContext* ctx, variable_list grads) {
        const at::Tensor x = ctx->get_saved_variables()[0];
        at::Tensor g = grads[0];
        if (!g.defined()) return {at::Tensor()};
        if (g.strides() != x.strides() || g.scalar_type() != at::kFloat) g = at::empty_like(x).copy_(g);
        at::Tensor dx = at::empty_like(x);
        const float *gp = g.data_ptr<float>(), *xp = x.data_ptr<float>();
        float* out = dx.data_ptr<float>();
        over_elements(x.numel(), [&](int64_t i, int64_t n) { kernels::silu_backward(gp + i, xp + i, out + i, n); });
        return {dx};
    }
};

}  // namespace

at::Tensor silu(const at::Tensor& x) {
    if (!fast_path(x)) return at::silu(x);
    if (!x.requires_grad() || !at::GradMode::is_enabled()) return silu_values(x);
    return SiluFunction::apply(x);
}

void silu_(at::Tensor& x) {
    if (!fast_path(x)) {
        at::silu_(x);
        return;
    }
    float* p = x.data_ptr<float>();
    over_elements(x.numel(), [&](int64_t i, int64_t n) { kernels::silu_inplace(p + i, n); });
}

}  // namespace cocola::model
