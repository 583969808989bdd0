// The training core every model shares: options as data, the run folder, optimizers with their state,
// rate schedules, a metrics log by column name, curves, and the loop that ties them together.
//
// A model brings an Objective (its step, its validation, its tensors); the core brings everything that makes a
// run resumable and safe: exact --resume (the step and every optimizer moment travel in one atomic checkpoint),
// Ctrl-C between steps, checkpoints by step count and by wall time, snapshots kept by count, the log.
// The contrastive COCOLA objective (src/train/trainer.cpp) and the generators (src/generate/) sit on top of it.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "cocola/error.hpp"
#include "cocola/safetensors.hpp"

namespace cocola::train {

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;
// One row of a metrics log: column name -> value (a column absent from the map is left empty in that row).
using Metrics = std::map<std::string, double>;

// ---------------------------------------------------------------- options as data
// Each model describes its options once, as a visitor over its options struct:
//     template <class V> void visit_options(MyOptions& o, V&& v) { v(Option{"lr", {"--lr"}, true}, o.lr); ... }
// and the JSON of options.json, the reading of it, and which CLI flags --resume may change all derive from that
// one list. `json` is the key in options.json; `flags` the CLI flags that set it; `resumable`: may be given
// anew on --resume (everything else is fixed for the run's life).
struct Option {
    const char* json;
    std::vector<const char*> flags;
    bool resumable = false;
};

// How one option's value is written to and read from JSON. Enumerations specialise it (name <-> value).
template <class T, class = void>
struct OptionCodec {
    static nlohmann::json write(const T& v) { return v; }
    static T read(const nlohmann::json& j) { return j.get<T>(); }
};

// options -> JSON object, one key per Option.
template <class Options, class Visit>
nlohmann::json options_to_json(const Options& o, Visit visit) {
    nlohmann::json j = nlohmann::json::object();
    Options copy = o;
    visit(copy, [&](const Option& opt, auto& value) {
        j[opt.json] = OptionCodec<std::decay_t<decltype(value)>>::write(value);
    });
    return j;
}

// JSON object -> options: keys missing from `j` keep the struct's defaults (older runs), keys listed in
// `required` must be there. Throws cocola::Error on a missing required key or a value of the wrong type.
template <class Options, class Visit>
Options options_from_json(const nlohmann::json& j, Visit visit, const std::vector<std::string>& required = {}) {
    if (!j.is_object()) throw Error("not a JSON object");
    for (const auto& key : required)
        if (!j.contains(key)) throw Error("missing \"" + key + "\"");
    Options o;
    visit(o, [&](const Option& opt, auto& value) {
        if (!j.contains(opt.json)) return;
        try {
            value = OptionCodec<std::decay_t<decltype(value)>>::read(j.at(opt.json));
        } catch (const Error&) {
            throw;
        } catch (const std::exception& e) {
            throw Error(std::string("\"") + opt.json + "\": " + e.what());
        }
    });
    return o;
}

// The CLI flags of the options --resume keeps (for the note that they are ignored) or may change.
template <class Options, class Visit>
std::vector<std::string> option_flags(Visit visit, bool resumable) {
    std::vector<std::string> out;
    Options o;
    visit(o, [&](const Option& opt, auto&) {
        if (opt.resumable == resumable)
            for (const char* f : opt.flags) out.emplace_back(f);
    });
    return out;
}

// On --resume: copies into `run` (the run's saved options) every resumable option whose flag `given` says the
// user gave anew, taking its value from `cli`.
template <class Options, class Visit>
void apply_resumable(const Options& cli, Options& run, Visit visit, const std::function<bool(const std::string&)>& given) {
    Options from = cli;
    // Visit both structs in lockstep: the visitor sees the same options in the same order.
    std::vector<void*> src;
    visit(from, [&](const Option&, auto& value) { src.push_back(&value); });
    size_t i = 0;
    visit(run, [&](const Option& opt, auto& value) {
        using T = std::decay_t<decltype(value)>;
        const T* s = static_cast<const T*>(src[i++]);
        if (!opt.resumable) return;
        for (const char* f : opt.flags)
            if (given(f)) value = *s;
    });
}

// ---------------------------------------------------------------- rate schedules
// The factor on every learning rate at the step with 0-based index `step`: linear warm-up over the first
// `warmup_steps` steps, then constant ("none") or a half cosine from 1 down to 0 one step past `total_steps`
// ("cosine"). A function of the step alone, so a resumed run follows the curve exactly.
struct RateSchedule {
    int64_t warmup_steps = 0;
    std::string decay = "none";
    int64_t total_steps = 0;
};
double rate_scale(const RateSchedule& s, int64_t step);  // throws cocola::Error on an unknown decay

// ---------------------------------------------------------------- optimizers
// Adam (PyTorch's update, bit for bit) and AdamW (decoupled weight decay, as torch.optim.AdamW), written out so
// that their state is ours to save and restore under the same names in LibTorch 1.13 and 2.x. Optional global
// gradient-norm clipping, and an exponential moving average (EMA) of the weights for generators.
struct OptimizerOptions {
    std::string kind = "adam";  // "adam" | "adamw"
    double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
    double weight_decay = 0;    // adamw only
    double clip_grad_norm = 0;  // > 0: the gradients' global L2 norm is clipped to this before each update
    double ema_decay = 0;       // > 0: ema = decay * ema + (1 - decay) * weights after each update
};

class Optimizer {
   public:
    // params: named tensors with requires_grad; rates: one learning rate per parameter.
    Optimizer(NamedTensors params, std::vector<double> rates, OptimizerOptions options = {});
    void zero_grad();
    // One update with every rate multiplied by `scale` (the schedule). Returns the gradients' global norm
    // before clipping when clipping is on, else -1.
    double step(double scale = 1);
    const NamedTensors& params() const { return params_; }
    int64_t updates() const { return t_; }
    const OptimizerOptions& options() const { return options_; }
    void set_rate(size_t i, double rate) { rates_.at(i) = rate; }
    // The weights' moving average (EMA on), in the order of params(); empty when off.
    const NamedTensors& ema() const { return ema_; }

    // State for a checkpoint: tensors "adam.m.<name>", "adam.v.<name>" (and "ema.<name>"), metadata "adam_t".
    void append_state(NamedTensors& tensors, std::map<std::string, std::string>& metadata) const;
    // Restores that state; throws cocola::Error naming `path` on a missing or mis-shaped tensor.
    void load_state(const safetensors::File& f, const std::string& path);

   private:
    NamedTensors params_, ema_;
    std::vector<at::Tensor> m_, v_;
    std::vector<double> rates_;
    OptimizerOptions options_;
    int64_t t_ = 0;
};

// Copies tensor `name` of `f` into dst (same shape); throws cocola::Error naming `path` otherwise.
void copy_from(const safetensors::File& f, const std::string& path, const std::string& name, at::Tensor& dst);

// ---------------------------------------------------------------- the metrics log
// log.csv with a header of column names; each model logs its own columns. Rows are written as they come
// (appended), values formatted as C++ streams do (6 significant digits), integers as integers.
class MetricsLog {
   public:
    MetricsLog(std::string path, std::vector<std::string> columns);  // columns[0] is the step
    void create() const;                       // a new log: the header only
    void truncate_after(int64_t step) const;   // keeps rows with step <= `step` (a resumed run rewrites the rest)
    void append(const Metrics& row) const;
    const std::vector<std::string>& columns() const { return columns_; }

   private:
    std::string path_;
    std::vector<std::string> columns_;
};

// One column of a log.csv as (step, value) points; rows that leave it empty are skipped. Throws on a missing file.
std::vector<std::pair<double, double>> read_log_column(const std::string& log_path, const std::string& column);

// ---------------------------------------------------------------- SVG charts
// Text escaped for SVG/XML (& < > " ').
std::string svg_escape(const std::string& text);

struct CurveSeries {
    std::string label, color;
    std::vector<std::pair<double, double>> points;
    bool dashed = false;
};
struct CurvePanel {
    std::string title;
    std::vector<CurveSeries> series;
    double ymin = 0, ymax = -1;  // ymax < ymin: from the data
    bool log_y = false;          // logarithmic y axis (values <= 0 are dropped)
};
// Moving average over `window` points.
std::vector<std::pair<double, double>> smooth(const std::vector<std::pair<double, double>>& points, size_t window);
// Panels side by side in one self-contained SVG, written atomically.
void write_panels_svg(const std::vector<CurvePanel>& panels, const std::string& out_path, const std::string& title = "");

// ---------------------------------------------------------------- the run folder
// A run folder holds options.json, checkpoint.safetensors (everything --resume needs, one atomic file),
// log.csv, curves.svg and the model files each objective writes.
class RunFolder {
   public:
    explicit RunFolder(std::string dir) : dir_(std::move(dir)) {}
    const std::string& dir() const { return dir_; }
    std::string path(const std::string& name) const { return dir_ + "/" + name; }
    std::string checkpoint_path() const { return path("checkpoint.safetensors"); }
    bool has_checkpoint() const;
    // Creates the folder and removes the temp files a kill during a write leaves behind. Fresh runs: refuses a
    // folder that already holds a run; resume: refuses one without a checkpoint.
    void open(bool resume) const;
    void write_options(const nlohmann::json& options) const;  // options.json, atomically
    nlohmann::json read_options() const;                      // throws naming the file
    // Copies `file` (in the folder) to snap_<step>.safetensors and removes the oldest snapshots beyond `keep`
    // (keep <= 0: keeps none).
    void snapshot(const std::string& file, int64_t step, int keep) const;
    std::vector<int64_t> snapshot_steps() const;  // ascending

   private:
    std::string dir_;
};

// ---------------------------------------------------------------- the loop
// What a model brings to the core.
class Objective {
   public:
    virtual ~Objective() = default;
    // Called once before the first step this process trains (0-based index of that step).
    virtual void start(int64_t first_step) {}
    // One optimizer update for the step with 0-based index `step`; returns its log values.
    virtual Metrics train_step(int64_t step) = 0;
    // Before validation and before the weights are written at the end or on a stop (e.g. BatchNorm statistics).
    virtual void settle() {}
    // Validation after `step` steps: adds its log values to `row` (and may write a best model).
    virtual void validate(int64_t step, Metrics& row) {}
    // Everything --resume needs besides the optimizer (model weights, buffers, extra heads, best scores).
    virtual void checkpoint_state(NamedTensors& tensors, std::map<std::string, std::string>& metadata) = 0;
    virtual void restore(const safetensors::File& f, const std::string& path) = 0;
    // Writes the model files of the current weights (e.g. last.safetensors), after each checkpoint.
    virtual void write_models(const RunFolder& run, int64_t step) {}
    // Called once when the loop ends (e.g. waits for a prefetch).
    virtual void finish() {}
    virtual Optimizer& optimizer() = 0;
};

struct LoopOptions {
    int64_t steps = 0;          // the run stops there
    int val_every = 0;          // steps between validations (0: none)
    int checkpoint_every = 25;  // steps between checkpoints
    double checkpoint_seconds = 0;  // > 0: also checkpoint when this much wall time has passed since the last
    int keep_snapshots = 0;     // > 0: after each validation, last.safetensors is also kept as snap_<step>, this many
    std::string format = "cocola training checkpoint";
    // false on the data-parallel ranks other than 0: they train only (no settle, validation, log, checkpoints,
    // row callback); `stop` must then be a decision all ranks share, polled once a step on every rank.
    bool writes = true;
    nlohmann::json options;     // stored in the checkpoint's metadata, for the record
};

// Called after every step with its row (step_seconds included) and the run's total steps.
using RowCallback = std::function<void(const Metrics& row, int64_t total_steps)>;

// Loads the checkpoint of `run` into the objective and its optimizer; returns the step it was taken at.
int64_t restore_checkpoint(const RunFolder& run, Objective& objective);

// Trains from `first_step` to `opt.steps`, logging every step, validating and checkpointing as `opt` says;
// `stop` is polled after each step (e.g. set by SIGINT): the loop then settles, checkpoints and returns.
// Returns the number of steps done when it returned.
int64_t run_loop(Objective& objective, const RunFolder& run, const MetricsLog& log, const LoopOptions& opt,
                 int64_t first_step, const RowCallback& on_row = {}, const std::function<bool()>& stop = {});

}  // namespace cocola::train
