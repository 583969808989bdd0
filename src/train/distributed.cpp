// The process group and the collectives of data-parallel training (see distributed.hpp).
// Built with USE_C10D_GLOO where the gloo headers were found (CMakeLists.txt); without them, available() is false
// and a Group cannot be made.
#include "train/distributed.hpp"

#include <torch/csrc/autograd/custom_function.h>
#include <torch/utils.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>

#include "cocola/error.hpp"
#include "cocola/safetensors.hpp"

#ifdef COCOLA_HAVE_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif

namespace cocola::train::dist {
namespace {

// c10 errors carry a C++ backtrace after their first line; the first line says what happened.
std::string first_line(const std::string& s) {
    const auto nl = s.find('\n');
    return nl == std::string::npos ? s : s.substr(0, nl);
}

}  // namespace

#ifdef COCOLA_HAVE_GLOO

bool available() { return true; }

struct Group::Impl {
    int rank = 0, size = 1;
    c10::intrusive_ptr<c10d::Store> store;
    c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;

    // Runs one collective; a peer that died or left shows as a Gloo I/O error or a timeout.
    template <class F>
    void run(const char* what, F&& f) {
        try {
            f()->wait();
        } catch (const std::exception& e) {
            throw Error("distributed training: rank " + std::to_string(rank) + " of " + std::to_string(size) +
                        " lost the group during " + what +
                        " (another rank stopped, crashed or was killed, or the network failed): " + first_line(e.what()));
        }
    }
};

Group::Group(const DistributedOptions& o) : impl_(std::make_unique<Impl>()) {
    if (o.world_size < 1) throw Error("--world-size must be at least 1");
    if (o.rank < 0 || o.rank >= o.world_size)
        throw Error("--rank " + std::to_string(o.rank) + " is outside 0.." + std::to_string(o.world_size - 1));
    const auto colon = o.master.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == o.master.size())
        throw Error("--master must be HOST:PORT, got \"" + o.master + "\"");
    const std::string host = o.master.substr(0, colon);
    int port = 0;
    try {
        size_t used = 0;
        port = std::stoi(o.master.substr(colon + 1), &used);
        if (used != o.master.size() - colon - 1) port = -1;
    } catch (const std::exception&) {
        port = -1;
    }
    if (port < 1 || port > 65535) throw Error("--master " + o.master + ": the port must be a number in 1..65535");
    if (!(o.timeout_seconds > 0)) throw Error("--dist-timeout must be above 0 seconds");
    impl_->rank = o.rank;
    impl_->size = o.world_size;
    const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(o.timeout_seconds * 1000));
    try {
        c10d::TCPStoreOptions so;
        so.port = static_cast<uint16_t>(port);
        so.isServer = o.rank == 0;
        so.numWorkers = static_cast<size_t>(o.world_size);
        so.waitWorkers = true;
        so.timeout = timeout;
        impl_->store = c10::make_intrusive<c10d::TCPStore>(host, so);
        auto opts = c10d::ProcessGroupGloo::Options::create();
        opts->timeout = timeout;
        // The interface Gloo binds to: GLOO_SOCKET_IFNAME as in PyTorch; loopback when the master is local;
        // else the address this machine's hostname resolves to.
        const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
        if (ifname && *ifname)
            opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
        else if (host == "localhost" || host.rfind("127.", 0) == 0)
            opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
        else
            opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
        impl_->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(impl_->store, o.rank, o.world_size, opts);
    } catch (const Error&) {
        throw;
    } catch (const std::exception& e) {
        throw Error("distributed training: rank " + std::to_string(o.rank) + " could not join the group at " +
                    o.master + ": " + first_line(e.what()));
    }
}

Group::~Group() = default;
int Group::rank() const { return impl_->rank; }
int Group::size() const { return impl_->size; }

void Group::all_reduce_sum(at::Tensor& t) {
    std::vector<at::Tensor> ts{t};
    impl_->run("an all-reduce", [&] { return impl_->pg->allreduce(ts); });
}

at::Tensor Group::all_gather(const at::Tensor& local) {
    const at::Tensor in = local.detach().cpu().contiguous();
    std::vector<at::Tensor> inputs{in};
    std::vector<std::vector<at::Tensor>> outputs(1);
    for (int r = 0; r < impl_->size; ++r) outputs[0].push_back(at::empty_like(in));
    impl_->run("an all-gather", [&] { return impl_->pg->allgather(outputs, inputs); });
    return at::cat(outputs[0], 0);
}

void Group::broadcast(at::Tensor& t, int root) {
    std::vector<at::Tensor> ts{t};
    c10d::BroadcastOptions bo;
    bo.rootRank = root;
    impl_->run("a broadcast", [&] { return impl_->pg->broadcast(ts, bo); });
}

std::string Group::broadcast_string(const std::string& s, int root) {
    at::Tensor n = at::full({1}, static_cast<int64_t>(s.size()), at::kLong);
    broadcast(n, root);
    at::Tensor bytes = at::zeros({n.item<int64_t>()}, at::kByte);
    if (impl_->rank == root) std::memcpy(bytes.data_ptr(), s.data(), s.size());
    if (bytes.numel() > 0) broadcast(bytes, root);
    return std::string(reinterpret_cast<const char*>(bytes.data_ptr()), static_cast<size_t>(bytes.numel()));
}

bool Group::any(bool flag) {
    at::Tensor t = at::full({1}, flag ? 1 : 0, at::kInt);
    all_reduce_sum(t);
    return t.item<int>() > 0;
}

#else  // no Gloo in this build

bool available() { return false; }
struct Group::Impl {};
Group::Group(const DistributedOptions&) {
    throw Error("distributed training: this build has no Gloo process group (LibTorch without distributed "
                "support, or the gloo headers were missing at build time: on Debian, apt install libgloo-dev "
                "and rebuild)");
}
Group::~Group() = default;
int Group::rank() const { return 0; }
int Group::size() const { return 1; }
void Group::all_reduce_sum(at::Tensor&) {}
at::Tensor Group::all_gather(const at::Tensor& local) { return local; }
void Group::broadcast(at::Tensor&, int) {}
std::string Group::broadcast_string(const std::string& s, int) { return s; }
bool Group::any(bool flag) { return flag; }

#endif

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Statistics are summed in double precision: sum and sum of squares of up to millions of values per channel.
struct SyncBatchNormFunction : torch::autograd::Function<SyncBatchNormFunction> {
    static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                              int64_t group_address, at::Tensor running_mean, at::Tensor running_var,
                              at::Tensor batches_tracked, double momentum, double eps) {
        auto* group = reinterpret_cast<Group*>(group_address);
        const int64_t C = x.size(1);
        at::Tensor stats = at::cat({x.sum({0, 2, 3}, false, at::kDouble), (x * x).sum({0, 2, 3}, false, at::kDouble),
                                    at::full({1}, static_cast<double>(x.numel() / C), x.options().dtype(at::kDouble))})
                               .cpu();
        group->all_reduce_sum(stats);
        const double n = stats[2 * C].item<double>();
        const at::Tensor mean = stats.slice(0, 0, C) / n;
        const at::Tensor var = (stats.slice(0, C, 2 * C) / n - mean * mean).clamp_min(0);
        const at::Tensor mean_f = mean.to(x.options());
        const at::Tensor var_f = var.to(x.options());
        // Normalising with given statistics is BatchNorm's inference kernel (any memory format).
        const at::Tensor y = at::batch_norm(x, weight, bias, mean_f, var_f, false, 0.0, eps, false);
        {
            // As torch::nn::BatchNorm2d in training: the running variance is the unbiased one.
            torch::NoGradGuard no_grad;
            running_mean.mul_(1 - momentum).add_(mean_f, momentum);
            running_var.mul_(1 - momentum).add_(var_f * (n / std::max(1.0, n - 1)), momentum);
            if (batches_tracked.defined()) batches_tracked.add_(1);
        }
        const at::Tensor invstd = (var + eps).rsqrt().to(x.options());
        ctx->save_for_backward({x, weight, mean_f, invstd});
        ctx->saved_data["group"] = group_address;
        ctx->saved_data["n"] = n;
        return y;
    }

    static variable_list backward(AutogradContext* ctx, variable_list grads) {
        auto* group = reinterpret_cast<Group*>(ctx->saved_data["group"].toInt());
        const double n = ctx->saved_data["n"].toDouble();
        const auto saved = ctx->get_saved_variables();
        const at::Tensor &x = saved[0], &weight = saved[1], &mean = saved[2], &invstd = saved[3];
        const at::Tensor g = grads[0];
        const int64_t C = x.size(1);
        const auto per_channel = [C](const at::Tensor& t) { return t.view({1, C, 1, 1}); };
        const at::Tensor xhat = (x - per_channel(mean)) * per_channel(invstd);
        const at::Tensor sum_g = g.sum({0, 2, 3});
        const at::Tensor sum_gx = (g * xhat).sum({0, 2, 3});
        at::Tensor total = at::cat({sum_g, sum_gx}).to(at::kDouble).cpu();
        group->all_reduce_sum(total);
        const at::Tensor mean_g = (total.slice(0, 0, C) / n).to(x.options());
        const at::Tensor mean_gx = (total.slice(0, C, 2 * C) / n).to(x.options());
        const at::Tensor gx = (g - per_channel(mean_g) - xhat * per_channel(mean_gx)) * per_channel(weight * invstd);
        return {gx, sum_gx, sum_g, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
    }
};

}  // namespace

at::Tensor sync_batch_norm(Group& group, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                           at::Tensor& running_mean, at::Tensor& running_var, at::Tensor& batches_tracked,
                           double momentum, double eps) {
    // The group travels through the autograd context as an address: the backward pass runs while training
    // holds the group, within the same step.
    return SyncBatchNormFunction::apply(x, weight, bias, reinterpret_cast<int64_t>(&group), running_mean, running_var,
                                        batches_tracked, momentum, eps);
}

at::Tensor gather_rows_with_grad(Group& group, const at::Tensor& local) {
    const int64_t n = local.size(0);
    const at::Tensor all = group.all_gather(local).to(local.device());
    std::vector<at::Tensor> blocks;
    for (int r = 0; r < group.size(); ++r) blocks.push_back(r == group.rank() ? local : all.slice(0, r * n, (r + 1) * n));
    return at::cat(blocks, 0);
}

void all_reduce_gradients(Group& group, const NamedTensors& params, const std::vector<std::string>& averaged) {
    std::vector<at::Tensor> flat;
    for (const auto& [name, p] : params) {
        const at::Tensor g = p.grad();
        flat.push_back(g.defined() ? g.detach().reshape(-1).cpu() : at::zeros({p.numel()}, at::kFloat));
    }
    at::Tensor buffer = at::cat(flat).to(at::kFloat);
    group.all_reduce_sum(buffer);
    int64_t at_ = 0;
    torch::NoGradGuard no_grad;
    for (const auto& [name, p] : params) {
        at::Tensor part = buffer.slice(0, at_, at_ + p.numel()).view(p.sizes());
        at_ += p.numel();
        const bool average = std::any_of(averaged.begin(), averaged.end(),
                                         [&](const std::string& prefix) { return name.rfind(prefix, 0) == 0; });
        if (average) part = part / group.size();
        at::Tensor& g = p.mutable_grad();  // a const member: the grad slot is the tensor's own
        if (g.defined())
            g.copy_(part);
        else
            g = part.to(p.device()).clone();
    }
}

void share_state(Group& group, Objective& objective) {
    NamedTensors tensors;
    std::map<std::string, std::string> metadata;
    objective.checkpoint_state(tensors, metadata);
    objective.optimizer().append_state(tensors, metadata);
    // Every rank lists the same tensors (the same model and optimizer); rank 0's values go to all.
    std::vector<at::Tensor> flat;
    for (const auto& [name, t] : tensors) flat.push_back(t.detach().reshape(-1).to(at::kCPU, at::kDouble));
    at::Tensor buffer = at::cat(flat);
    group.broadcast(buffer, 0);
    nlohmann::json meta(metadata);
    meta = nlohmann::json::parse(group.broadcast_string(meta.dump(), 0));
    if (group.rank() == 0) return;
    safetensors::File f;
    int64_t at_ = 0;
    for (const auto& [name, t] : tensors) {
        f.tensors.emplace_back(name, buffer.slice(0, at_, at_ + t.numel()).view(t.sizes()).to(t.scalar_type()));
        at_ += t.numel();
    }
    f.metadata = meta.get<std::map<std::string, std::string>>();
    const std::string origin = "the training state sent by rank 0";
    objective.restore(f, origin);
    objective.optimizer().load_state(f, origin);
}

}  // namespace cocola::train::dist
