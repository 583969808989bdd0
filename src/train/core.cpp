// The training core: schedules, optimizers, the metrics log, the run folder and the loop (train_core.hpp).
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "cocola/fsutil.hpp"
#include "cocola/train_core.hpp"

namespace cocola::train {
namespace fs = std::filesystem;

// ---------------------------------------------------------------- schedules

double rate_scale(const RateSchedule& s, int64_t step) {
    if (step < s.warmup_steps) return static_cast<double>(step + 1) / static_cast<double>(s.warmup_steps);
    if (s.decay == "none") return 1.0;
    if (s.decay != "cosine") throw Error("unknown learning-rate decay '" + s.decay + "' (none or cosine)");
    // The first step after the warm-up runs at the full rate; the rate reaches zero one step past the last.
    const double span = static_cast<double>(std::max<int64_t>(1, s.total_steps - s.warmup_steps));
    const double progress = std::min(1.0, static_cast<double>(step - s.warmup_steps) / span);
    return 0.5 * (1.0 + std::cos(M_PI * progress));
}

// ---------------------------------------------------------------- optimizers

Optimizer::Optimizer(NamedTensors params, std::vector<double> rates, OptimizerOptions options)
    : params_(std::move(params)), rates_(std::move(rates)), options_(std::move(options)) {
    if (rates_.size() != params_.size()) throw Error("optimizer: one learning rate per parameter");
    if (options_.kind != "adam" && options_.kind != "adamw")
        throw Error("unknown optimizer '" + options_.kind + "' (adam or adamw)");
    if (!(options_.ema_decay >= 0 && options_.ema_decay < 1)) throw Error("optimizer: EMA decay must be in [0, 1)");
    if (!(options_.clip_grad_norm >= 0)) throw Error("optimizer: the clipping norm must be >= 0");
    torch::NoGradGuard no_grad;
    for (auto& [n, x] : params_) {
        m_.push_back(at::zeros_like(x));
        v_.push_back(at::zeros_like(x));
        if (options_.ema_decay > 0) ema_.emplace_back(n, x.detach().clone());
    }
}

void Optimizer::zero_grad() {
    for (auto& [n, p] : params_)
        if (p.grad().defined()) p.mutable_grad().zero_();
}

double Optimizer::step(double scale) {
    torch::NoGradGuard no_grad;
    double norm = -1;
    if (options_.clip_grad_norm > 0) {
        // The global L2 norm over every gradient (as torch.nn.utils.clip_grad_norm_), one scale for all.
        at::Tensor sq;
        for (auto& [n, p] : params_)
            if (p.grad().defined()) {
                at::Tensor s = p.grad().to(at::kDouble).pow(2).sum();
                sq = sq.defined() ? sq + s : s;
            }
        norm = sq.defined() ? std::sqrt(sq.item<double>()) : 0.0;
        if (std::isfinite(norm) && norm > options_.clip_grad_norm) {
            const double f = options_.clip_grad_norm / (norm + 1e-6);
            for (auto& [n, p] : params_)
                if (p.grad().defined()) p.mutable_grad().mul_(f);
        }
    }
    ++t_;
    const double b1 = options_.beta1, b2 = options_.beta2;
    const double bc1 = 1 - std::pow(b1, static_cast<double>(t_)), bc2 = 1 - std::pow(b2, static_cast<double>(t_));
    for (size_t i = 0; i < params_.size(); ++i) {
        at::Tensor& p = params_[i].second;
        if (!p.grad().defined()) continue;
        const at::Tensor g = p.grad();
        // AdamW: the decay is decoupled from the gradient's moments (Loshchilov & Hutter), scaled by the rate.
        if (options_.kind == "adamw" && options_.weight_decay > 0) p.mul_(1 - rates_[i] * scale * options_.weight_decay);
        m_[i].mul_(b1).add_(g, 1 - b1);
        v_[i].mul_(b2).addcmul_(g, g, 1 - b2);
        at::Tensor denom = (v_[i].sqrt() / std::sqrt(bc2)).add_(options_.eps);
        p.addcdiv_(m_[i], denom, -rates_[i] * scale / bc1);
    }
    if (options_.ema_decay > 0)
        for (size_t i = 0; i < params_.size(); ++i)
            ema_[i].second.mul_(options_.ema_decay).add_(params_[i].second.detach(), 1 - options_.ema_decay);
    return norm;
}

void Optimizer::append_state(NamedTensors& tensors, std::map<std::string, std::string>& metadata) const {
    for (size_t i = 0; i < params_.size(); ++i) {
        tensors.emplace_back("adam.m." + params_[i].first, m_[i]);
        tensors.emplace_back("adam.v." + params_[i].first, v_[i]);
    }
    for (const auto& [n, e] : ema_) tensors.emplace_back("ema." + n, e);
    metadata["adam_t"] = std::to_string(t_);
}

void copy_from(const safetensors::File& f, const std::string& path, const std::string& name, at::Tensor& dst) {
    const at::Tensor* t = f.find(name);
    if (!t) throw Error(path + ": missing tensor " + name);
    if (t->sizes() != dst.sizes()) throw Error(path + ": tensor " + name + " has the wrong shape");
    torch::NoGradGuard no_grad;
    dst.copy_(*t);
}

void Optimizer::load_state(const safetensors::File& f, const std::string& path) {
    for (size_t i = 0; i < params_.size(); ++i) {
        copy_from(f, path, "adam.m." + params_[i].first, m_[i]);
        copy_from(f, path, "adam.v." + params_[i].first, v_[i]);
    }
    for (auto& [n, e] : ema_) copy_from(f, path, "ema." + n, e);
    try {
        t_ = std::stoll(f.metadata.at("adam_t"));
    } catch (const std::exception&) {
        throw Error(path + ": missing or malformed adam_t metadata");
    }
}

// ---------------------------------------------------------------- the metrics log

MetricsLog::MetricsLog(std::string path, std::vector<std::string> columns) : path_(std::move(path)), columns_(std::move(columns)) {
    if (columns_.empty()) throw Error("a metrics log needs columns");
}

namespace {
std::string header_line(const std::vector<std::string>& columns) {
    std::string h;
    for (size_t i = 0; i < columns.size(); ++i) h += (i ? "," : "") + columns[i];
    return h + "\n";
}
}  // namespace

void MetricsLog::create() const { fsutil::write_file_atomically(path_, header_line(columns_)); }

void MetricsLog::truncate_after(int64_t step) const {
    std::ifstream in(path_);
    std::string out = header_line(columns_), line;
    std::getline(in, line);
    while (std::getline(in, line)) {
        if (line.empty()) continue;
        try {
            if (std::stoll(line.substr(0, line.find(','))) <= step) out += line + "\n";
        } catch (const std::exception&) {
            // A line cut by a kill mid-write: dropped with the rest of what the killed run logged.
        }
    }
    fsutil::write_file_atomically(path_, out);
}

void MetricsLog::append(const Metrics& row) const {
    std::ostringstream line;
    for (size_t i = 0; i < columns_.size(); ++i) {
        if (i) line << ",";
        const auto it = row.find(columns_[i]);
        if (it == row.end()) continue;
        const double v = it->second;
        // Steps and counts as integers (a stream would write step 1000000 as 1e+06).
        if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 1e15) line << static_cast<long long>(v);
        else line << v;
    }
    line << "\n";
    std::ofstream f(path_, std::ios::app);
    f << line.str();
}

std::vector<std::pair<double, double>> read_log_column(const std::string& log_path, const std::string& column) {
    std::ifstream in(log_path);
    if (!in) throw Error(log_path + ": cannot open (not a training run?)");
    std::string line;
    std::getline(in, line);
    std::vector<std::string> names;
    {
        std::stringstream ss(line);
        std::string x;
        while (std::getline(ss, x, ',')) names.push_back(x);
    }
    const auto col = std::find(names.begin(), names.end(), column);
    std::vector<std::pair<double, double>> out;
    if (col == names.end() || names.empty()) return out;
    const size_t c = static_cast<size_t>(col - names.begin());
    while (std::getline(in, line)) {
        std::vector<std::string> f;
        std::stringstream ss(line);
        std::string x;
        while (std::getline(ss, x, ',')) f.push_back(x);
        if (f.size() <= c || f[c].empty() || f[0].empty()) continue;
        try {
            out.push_back({std::stod(f[0]), std::stod(f[c])});
        } catch (const std::exception&) {
        }
    }
    return out;
}

// ---------------------------------------------------------------- the run folder

bool RunFolder::has_checkpoint() const { return fs::exists(checkpoint_path()); }

void RunFolder::open(bool resume) const {
    if (dir_.empty()) throw Error("no run folder given");
    if (resume && !has_checkpoint()) throw Error(dir_ + ": nothing to resume (no checkpoint.safetensors)");
    if (!resume && has_checkpoint()) throw Error(dir_ + ": a run already exists here; use --resume or another --out");
    fs::create_directories(dir_);
    // A kill during a write leaves its temp file behind (never a half-written target): clear those.
    for (const auto& entry : fs::directory_iterator(dir_))
        if (entry.path().filename().string().find(".tmp.") != std::string::npos) fs::remove(entry.path());
}

void RunFolder::write_options(const nlohmann::json& options) const {
    fsutil::write_file_atomically(path("options.json"), options.dump(2) + "\n");
}

nlohmann::json RunFolder::read_options() const {
    std::ifstream in(path("options.json"));
    if (!in) throw Error(dir_ + ": not a training run (no options.json)");
    auto j = nlohmann::json::parse(in, nullptr, false);
    if (j.is_discarded() || !j.is_object()) throw Error(path("options.json") + ": malformed (not a JSON object)");
    return j;
}

std::vector<int64_t> RunFolder::snapshot_steps() const {
    std::vector<int64_t> steps;
    if (!fs::exists(dir_)) return steps;
    for (const auto& e : fs::directory_iterator(dir_)) {
        const std::string n = e.path().filename().string();
        if (n.rfind("snap_", 0) != 0 || e.path().extension() != ".safetensors") continue;
        try {
            size_t used = 0;
            const std::string num = n.substr(5, n.size() - 5 - 12);
            const int64_t s = std::stoll(num, &used);
            if (used == num.size()) steps.push_back(s);
        } catch (const std::exception&) {
        }
    }
    std::sort(steps.begin(), steps.end());
    return steps;
}

void RunFolder::snapshot(const std::string& file, int64_t step, int keep) const {
    if (keep <= 0) return;
    const std::string target = path("snap_" + std::to_string(step) + ".safetensors");
    fsutil::write_atomically(target, [&](const std::string& tmp) { fs::copy_file(path(file), tmp, fs::copy_options::overwrite_existing); });
    auto steps = snapshot_steps();
    while (static_cast<int>(steps.size()) > keep) {
        fs::remove(path("snap_" + std::to_string(steps.front()) + ".safetensors"));
        steps.erase(steps.begin());
    }
}

// ---------------------------------------------------------------- the loop

int64_t restore_checkpoint(const RunFolder& run, Objective& objective) {
    const std::string path = run.checkpoint_path();
    const auto f = safetensors::load(path);
    objective.restore(f, path);
    objective.optimizer().load_state(f, path);
    try {
        return std::stoll(f.metadata.at("step"));
    } catch (const std::exception&) {
        throw Error(path + ": missing or malformed step metadata");
    }
}

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

void save_checkpoint(Objective& objective, const RunFolder& run, const LoopOptions& opt, int64_t step) {
    // One file holds the model, the optimizer and the step, written atomically: a kill at any moment leaves
    // either the previous checkpoint or this one, never a mix.
    NamedTensors tensors;
    std::map<std::string, std::string> meta;
    objective.checkpoint_state(tensors, meta);
    objective.optimizer().append_state(tensors, meta);
    meta["step"] = std::to_string(step);
    meta["options"] = opt.options.dump();
    meta["format"] = opt.format;
    safetensors::save(run.checkpoint_path(), tensors, meta);
    objective.write_models(run, step);
}
}  // namespace

int64_t run_loop(Objective& objective, const RunFolder& run, const MetricsLog& log, const LoopOptions& opt,
                 int64_t first_step, const RowCallback& on_row, const std::function<bool()>& stop) {
    int64_t step = first_step;
    if (step < opt.steps) objective.start(step);
    auto last_save = Clock::now();
    while (step < opt.steps) {
        const auto t0 = Clock::now();
        Metrics row = objective.train_step(step);
        ++step;
        row["step"] = static_cast<double>(step);
        const bool validate_now = opt.val_every > 0 && (step % opt.val_every == 0 || step == opt.steps);
        const bool stopping = stop && stop();
        if (!opt.writes) {
            if (stopping) break;
            continue;
        }
        // What the written models carry (e.g. BatchNorm statistics) is measured for their weights.
        if (validate_now || stopping || step == opt.steps) objective.settle();
        if (validate_now) objective.validate(step, row);
        row["step_seconds"] = seconds_since(t0);
        log.append(row);
        const bool by_time = opt.checkpoint_seconds > 0 && seconds_since(last_save) >= opt.checkpoint_seconds;
        if (step % std::max(1, opt.checkpoint_every) == 0 || step == opt.steps || stopping || validate_now || by_time) {
            save_checkpoint(objective, run, opt, step);
            last_save = Clock::now();
            if (validate_now && opt.keep_snapshots > 0 && fs::exists(run.path("last.safetensors")))
                run.snapshot("last.safetensors", step, opt.keep_snapshots);
        }
        if (on_row) on_row(row, opt.steps);
        if (stopping) break;
    }
    objective.finish();
    return step;
}

}  // namespace cocola::train
