// The contrastive objective of COCOLA (the paper's section 3) on the training core: the K x K cross-entropy,
// the optional auxiliary heads, precise BatchNorm statistics, validation, and train() that runs it all through
// train::run_loop. The data side is in contrastive_batches.cpp, the options in contrastive_options.cpp.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <future>
#include <map>
#include <type_traits>

#include "cocola/error.hpp"
#include "cocola/evaluate.hpp"
#include "cocola/rng.hpp"
#include "cocola/safetensors.hpp"
#include "cocola/train.hpp"
#include "cocola/train_core.hpp"
#include "model/cocola_net.hpp"
#include "train/contrastive_batches.hpp"
#include "train/distributed.hpp"

namespace cocola::train {
namespace {

namespace fs = std::filesystem;
using namespace contrastive;

// Logits and targets of the contrastive cross-entropy for embeddings e = [anchors; positives] ([2K, D]).
//   paper:     S = sim(anchors, positives), K x K, the positive of row i in column i (the paper's Eq.).
//   symmetric: every embedding against the 2K - 1 others (self removed), the partner as target: the
//              variant the reference code trains with (twice the rows, anchors also as negatives).
void contrastive_logits(model::CocolaNet& net, const at::Tensor& e, int K, LossKind kind, at::Tensor& S, at::Tensor& target) {
    const auto long_opts = at::TensorOptions().dtype(at::kLong).device(e.device());
    if (kind == LossKind::Paper) {
        S = net.similarity(e.slice(0, 0, K), e.slice(0, K));
        target = at::arange(K, long_opts);
        return;
    }
    at::Tensor full = net.similarity(e, e);
    at::Tensor keep = at::eye(2 * K, at::TensorOptions().dtype(at::kBool).device(e.device())).logical_not();
    S = full.masked_select(keep).reshape({2 * K, 2 * K - 1});
    // Row i < K: its partner K + i sits at column K + i - 1 once the diagonal is gone; row K + i: column i.
    target = at::cat({at::arange(K - 1, 2 * K - 1, long_opts), at::arange(0, K, long_opts)});
}

// ---------------------------------------------------------------- auxiliary tempo hint
// Lags of the tempo profile: 0.15-2 s at 100 frames/s (hop 160 at 16 kHz), beat periods of 30-400 BPM.
constexpr int64_t kTempoMinLag = 15, kTempoMaxLag = 200;

}  // namespace

// Tempo profiles of feature windows [B, C, M, T] (dB): the onset envelope (frame-to-frame rises summed over
// channels and bands), centred and normalised, then its autocorrelation at each lag, centred and normalised.
// Two windows with the same beat period have similar profiles wherever their beats fall (the hand-made "tempo"
// cue of tools/coherence_cues.py: 89.9 % K = 2 on the procedural test split, 95.2 % on openmsx).

at::Tensor tempo_profiles(const at::Tensor& features) {
    const int64_t T = features.size(3);
    at::Tensor rise = (features.slice(3, 1, T) - features.slice(3, 0, T - 1)).clamp_min(0).sum({1, 2});  // [B, T-1]
    rise = rise - rise.mean(1, true);
    rise = rise / (rise.norm(2, 1, true) + 1e-9);
    const int64_t n = rise.size(1);
    std::vector<at::Tensor> lags;
    for (int64_t lag = kTempoMinLag; lag < std::min(kTempoMaxLag, n); ++lag)
        lags.push_back((rise.slice(1, 0, n - lag) * rise.slice(1, lag, n)).sum(1));
    at::Tensor p = at::stack(lags, 1);
    p = p - p.mean(1, true);
    return p / (p.norm(2, 1, true) + 1e-9);
}

namespace {

// --aux-labels: cross-entropy of the tempo and key heads over the windows that have the label; a head whose
// batch has none adds nothing.
at::Tensor labels_loss(const at::Tensor& pooled, torch::nn::Linear& tempo_head, torch::nn::Linear& key_head,
                       const ReadyBatch& rb, at::Device device) {
    at::Tensor total = at::zeros({}, pooled.options());
    const std::pair<torch::nn::Linear*, const std::vector<int64_t>*> heads[] = {{&tempo_head, &rb.tempo_target},
                                                                                {&key_head, &rb.key_target}};
    for (const auto& [head, target] : heads) {
        if (std::none_of(target->begin(), target->end(), [](int64_t c) { return c >= 0; })) continue;
        const at::Tensor y = at::tensor(*target, at::kLong).to(device);
        total = total + at::nll_loss(at::log_softmax((*head)->forward(pooled), 1), y, {}, at::Reduction::Mean, -1);
    }
    return total;
}

// Names of training-only parameters (the auxiliary head) in the checkpoint: kept for --resume, never in the
// model files.
const std::string kTrainOnlyPrefix = "train_only.";

// ---------------------------------------------------------------- precise BatchNorm
// BatchNorm's running statistics are an average with momentum 0.01 over the last ~100 steps, taken while the
// weights moved: early in training they lag the current weights so far that the eval-mode network maps every
// input to nearly the same embedding.
// (Measured: at step 150 of a batch-16 run, scores of different songs were equal to 4 decimals.)
// Before a model is validated or written, its statistics are measured again for the current weights: the
// cumulative average over a fixed set of training batches (the first kBatchNormBatches of the schedule), in
// train mode, without gradients. This erases the running history, so the result depends only on the weights:
// a resumed run ends with the same statistics as an uninterrupted one.
constexpr int kBatchNormBatches = 8;

void recalibrate_batchnorm(model::CocolaNet& net, const Schedule& sched, const TrainOptions& o, at::Device device) {
    torch::NoGradGuard no_grad;
    std::vector<torch::nn::BatchNorm2dImpl*> bns;
    for (const auto& mod : net.modules(/*include_self=*/false))
        if (auto* b = mod->as<torch::nn::BatchNorm2dImpl>()) bns.push_back(b);
    // c10::optional in LibTorch 1.13, std::optional in 2.x: the options' own type, and {} for "none".
    using Momentum = std::decay_t<decltype(bns.front()->options.momentum())>;
    std::vector<Momentum> momentum;
    for (auto* b : bns) {
        momentum.push_back(b->options.momentum());
        b->options.momentum(Momentum{});  // none: a cumulative average
        b->reset_running_stats();
    }
    at::manual_seed(mix_seed(o.seed ^ 0xB4u, 0));  // drop-connect draws
    for_first_batches(sched, o, kBatchNormBatches, device, [&](const at::Tensor& f) { net.embed(f); });
    for (size_t i = 0; i < bns.size(); ++i) bns[i]->options.momentum(momentum[i]);
}

// ---------------------------------------------------------------- centred projection (data-dependent init)
// Embeddings of different inputs that start nearly equal give a contrastive gradient that is second order in
// their differences (a column's common part cancels in the softmax). This init rescales each projection output
// to zero mean and unit spread over the first training batches, so they start apart whatever the random draw
// (the architecture is unchanged: only W and b of the Linear). It reports how large the input-dependent part
// was against the common part: measured 2.2 (K 16) and 1.5 (K 4) at our random init, so there it changes the
// scale more than the spread; the collapse seen later in runs is learnt (docs/training.md, section 5).
constexpr int kCenterBatches = 2;

void center_projection(model::CocolaNet& net, const Schedule& sched, const TrainOptions& o, at::Device device) {
    torch::NoGradGuard no_grad;
    at::manual_seed(mix_seed(o.seed ^ 0xCE7u, 0));  // drop-connect draws
    std::vector<at::Tensor> pooled;  // the EfficientNet's pooled features, before dropout and projection
    for_first_batches(sched, o, kCenterBatches, device, [&](const at::Tensor& f) {
        net.embed(f, [&](const std::string& stage, const at::Tensor& x) {
            if (stage == "avgpool") pooled.push_back(x.flatten(1));
        });
    });
    at::Tensor y = net.projection->forward(at::cat(pooled));  // [N, D]
    at::Tensor mean = y.mean(0), spread = y.std(0).clamp_min(1e-6);
    const double before = (y - mean).norm().item<double>() / (mean.norm().item<double>() * std::sqrt(y.size(0)) + 1e-12);
    auto& w = net.projection->weight;
    auto& b = net.projection->bias;
    w.div_(spread.unsqueeze(1));
    b.sub_(mean).div_(spread);
    std::fprintf(stderr, "centred the projection on %lld windows (input-dependent / common part was %.4f)\n",
                 static_cast<long long>(y.size(0)), before);
}

// ---------------------------------------------------------------- validation

struct ValSet {
    const data::StemCache* cache;
    std::string split;
    std::vector<data::EvalItem> items;
};

struct Validation {
    double loss = -1, accuracy = -1;  // the K x K measure over val_batches batches
    double k2_accuracy = -1;          // cocola eval's measure (K = 2, distinct tracks, the whole split)
};

// The paper's Table-2 measure on the validation split, as `cocola eval --k 2` computes it on a test split: the
// K x K loss falls and rises with the scale of W while the pairwise choice it stands for may not, so checkpoints
// are better judged by this. The mean over the data sets (each counts once, whatever its size); -1 when no set
// has the two items a K = 2 batch needs.
double validate_k2(const model::Model& m, const std::vector<ValSet>& sets, data::PairMode pairs) {
    double sum = 0;
    int n = 0;
    for (const auto& vs : sets) {
        if (vs.items.size() < 2) continue;
        eval::EvalOptions eo;
        eo.k = 2;
        eo.split = vs.split;
        eo.pairs = pairs;
        sum += eval::evaluate(m, *vs.cache, eo).accuracy;
        ++n;
    }
    return n ? sum / n : -1;
}

Validation contrastive_validation(model::Model& m, const std::vector<ValSet>& sets, const TrainOptions& o) {
    auto& net = m.net();
    torch::NoGradGuard no_grad;
    net.eval();
    double loss = 0, acc = 0;
    int batches = 0;
    const int K = o.batch;
    const int64_t L = 80000;
    for (const auto& vs : sets) {
        int in_set = 0;
        for (size_t s = 0; s + K <= vs.items.size() && in_set < o.val_batches; s += K, ++in_set) {
            std::vector<float> a(static_cast<size_t>(K) * L), p(a.size());
            for (int k = 0; k < K; ++k) data::render_item(*vs.cache, vs.items[s + k], L, a.data() + k * L, p.data() + k * L);
            at::Tensor e = net.embed(pair_features(o.frontend, a.data(), p.data(), K, L).to(m.device()));
            // Validation always reports the paper's K x K measure, whatever loss trains.
            at::Tensor S, target;
            contrastive_logits(net, e, K, LossKind::Paper, S, target);
            loss += at::nll_loss(at::log_softmax(S, 1), target).item<double>();
            acc += S.argmax(1).eq(target).to(at::kFloat).mean().item<double>();
            ++batches;
        }
    }
    net.train();
    Validation v;
    if (batches > 0) {
        v.loss = loss / batches;
        v.accuracy = acc / batches;
    }
    // The pairs the K x K validation measures (the shared-stem warm-up is judged on disjoint sub-mixes).
    v.k2_accuracy = validate_k2(m, sets, o.pair_mode == data::PairMode::SharedStem ? data::PairMode::SubMix : o.pair_mode);
    return v;
}

// ---------------------------------------------------------------- checkpoints
// ---------------------------------------------------------------- the objective on the core

// The model's parameters and buffers, by their state_dict names.
std::vector<std::pair<std::string, at::Tensor>> model_state(model::Model& m) {
    std::vector<std::pair<std::string, at::Tensor>> out;
    for (const auto& p : m.net().named_parameters()) out.emplace_back(p.key(), p.value());
    for (const auto& b : m.net().named_buffers()) out.emplace_back(b.key(), b.value());
    return out;
}

// Data-parallel training: rows gathered rank after rank, each rank's block [its anchors; its positives] ->
// [all anchors; all positives], the order of one process's batch.
at::Tensor anchors_then_positives(const at::Tensor& blocks, int ranks) {
    const int64_t k = blocks.size(0) / (2 * ranks);
    std::vector<at::Tensor> anchors, positives;
    for (int r = 0; r < ranks; ++r) {
        anchors.push_back(blocks.slice(0, 2 * k * r, 2 * k * r + k));
        positives.push_back(blocks.slice(0, 2 * k * r + k, 2 * k * (r + 1)));
    }
    anchors.insert(anchors.end(), positives.begin(), positives.end());
    return at::cat(anchors, 0);
}

// Gathers each rank's rows (with the gradient path into this rank's own) into the one-process batch order.
at::Tensor gather_batch(dist::Group* group, const at::Tensor& local) {
    if (!group) return local;
    return anchors_then_positives(dist::gather_rows_with_grad(*group, local), group->size());
}

class ContrastiveObjective : public Objective {
   public:
    ContrastiveObjective(const TrainOptions& o, TrainingData& td, model::Model& m, std::vector<ValSet> val,
                         at::Device device, std::unique_ptr<Optimizer> adam, torch::nn::Linear aux_head,
                         torch::nn::Linear tempo_head, torch::nn::Linear key_head, dist::Group* group)
        : o_(o), td_(td), m_(m), val_(std::move(val)), device_(device), adam_(std::move(adam)),
          aux_head_(std::move(aux_head)), tempo_head_(std::move(tempo_head)), key_head_(std::move(key_head)),
          group_(group) {
        if (!group_) return;
        // This rank's pairs of every batch, and their rows in the global [anchors; positives].
        const int k = o_.batch / group_->size(), first = k * group_->rank();
        range_ = {first, k};
        std::vector<int64_t> rows;
        for (int side = 0; side < 2; ++side)
            for (int i = 0; i < k; ++i) rows.push_back(side * o_.batch + first + i);
        partition_.global_rows = 2 * o_.batch;
        partition_.rows = at::tensor(rows, at::kLong).to(device_);
        partition_.batch_norm = [this](const at::Tensor& x, torch::nn::BatchNorm2dImpl& bn) {
            return dist::sync_batch_norm(*group_, x, bn.weight, bn.bias, bn.running_mean, bn.running_var,
                                         bn.num_batches_tracked, bn.options.momentum().value_or(0.1), bn.options.eps());
        };
    }

    Optimizer& optimizer() override { return *adam_; }

    void start(int64_t first_step) override { next_ = prefetch(first_step); }

    Metrics train_step(int64_t step) override {
        ReadyBatch rb = next_.get();  // the model waits here only if features are slower than a step
        if (step + 1 < o_.steps) next_ = prefetch(step + 1);
        const at::Tensor feats = features_on(rb, o_, device_);
        const int K = group_ ? o_.batch : static_cast<int>(feats.size(0) / 2);
        // Data-parallel: this rank's rows of the global batch, for BatchNorm and the random masks (this step only).
        struct PartitionScope {
            model::CocolaNet& net;
            PartitionScope(model::CocolaNet& n, const model::BatchPartition* p) : net(n) { net.set_partition(p); }
            ~PartitionScope() { net.set_partition(nullptr); }
        } scope(m_.net(), group_ ? &partition_ : nullptr);
        // Dropout and drop-connect draw from torch's generator: seeded per step, so a resumed run draws the same.
        at::manual_seed(mix_seed(o_.seed ^ 0xD309u, static_cast<uint64_t>(step)));
        at::Tensor pooled;  // the encoder's [2K, 1280] features, for the auxiliary heads
        model::ActivationHook keep_pooled;
        if (aux_head_ || tempo_head_)
            keep_pooled = [&](const std::string& stage, const at::Tensor& x) { if (stage == "avgpool") pooled = x; };
        at::Tensor e = gather_batch(group_, m_.net().embed(feats, keep_pooled));
        if (pooled.defined()) pooled = gather_batch(group_, pooled.flatten(1));
        at::Tensor S, target;
        contrastive_logits(m_.net(), e, K, o_.loss, S, target);
        at::Tensor loss = at::nll_loss(at::log_softmax(S, 1), target);
        at::Tensor aux_loss;
        if (aux_head_) {
            at::Tensor wanted;
            {
                torch::NoGradGuard no_grad;
                wanted = gather_batch(group_, tempo_profiles(feats));
            }
            aux_loss = 1 - at::cosine_similarity(aux_head_->forward(pooled.flatten(1)), wanted, 1).mean();
        }
        at::Tensor label_loss;
        if (tempo_head_) label_loss = labels_loss(pooled.flatten(1), tempo_head_, key_head_, rb, device_);
        at::Tensor total = loss;
        if (aux_head_) total = total + o_.aux_tempo * aux_loss;
        if (tempo_head_) total = total + o_.aux_labels * label_loss;
        adam_->zero_grad();
        total.backward();
        // The encoder's gradients are partial sums (each rank's rows); W and the heads saw the whole batch.
        if (group_) dist::all_reduce_gradients(*group_, adam_->params(), {"similarity.", kTrainOnlyPrefix});
        // A function of the step alone, so a resumed run warms up exactly as an uninterrupted one.
        adam_->step(learning_rate_scale(o_, step));
        m_.weights_changed();

        Metrics row;
        row["epoch"] = rb.epoch;
        row["loss"] = loss.item<double>();  // the contrastive loss alone, comparable across runs
        if (aux_head_ || tempo_head_)
            row["aux_loss"] = (aux_head_ ? aux_loss.item<double>() : 0.0) + (tempo_head_ ? label_loss.item<double>() : 0.0);
        row["accuracy"] = S.argmax(1).eq(target).to(at::kFloat).mean().item<double>();
        row["feature_seconds"] = rb.feature_seconds;
        return row;
    }

    void settle() override { recalibrate_batchnorm(m_.net(), td_.schedule, o_, device_); }

    void validate(int64_t step, Metrics& row) override {
        if (val_.empty()) return;
        const Validation v = contrastive_validation(m_, val_, o_);
        row["val_loss"] = v.loss;
        row["val_accuracy"] = v.accuracy;
        row["val_k2_accuracy"] = v.k2_accuracy;
        if (v.k2_accuracy < 0) row.erase("val_k2_accuracy");
        if (v.loss < 0) row.erase("val_loss"), row.erase("val_accuracy");
        if (v.loss >= 0 && v.loss < best_val_) {
            best_val_ = v.loss;
            m_.save(o_.run_dir + "/best.safetensors", {{"step", std::to_string(step)},
                                                       {"val_loss", std::to_string(v.loss)},
                                                       {"val_accuracy", std::to_string(v.accuracy)},
                                                       {"val_k2_accuracy", std::to_string(v.k2_accuracy)}});
        }
    }

    void checkpoint_state(NamedTensors& tensors, std::map<std::string, std::string>& metadata) override {
        tensors = model_state(m_);
        for (const auto& [name, t] : adam_->params())
            if (name.rfind(kTrainOnlyPrefix, 0) == 0) tensors.emplace_back(name, t);
        metadata["best_val_loss"] = std::to_string(best_val_);
    }

    void restore(const safetensors::File& f, const std::string& path) override {
        for (auto& [n, t] : model_state(m_)) copy_from(f, path, n, t);
        for (const auto& [n, t] : adam_->params())
            if (n.rfind(kTrainOnlyPrefix, 0) == 0) {
                at::Tensor dst = t;
                copy_from(f, path, n, dst);
            }
        try {
            best_val_ = std::stod(f.metadata.at("best_val_loss"));
        } catch (const std::exception&) {
            throw Error(path + ": missing or malformed best_val_loss metadata");
        }
    }

    void write_models(const RunFolder& run, int64_t step) override {
        m_.save(run.path("last.safetensors"), {{"step", std::to_string(step)}, {"trained_by", "cocola train"}});
    }

    void finish() override {
        if (next_.valid()) next_.wait();
    }

   private:
    std::future<ReadyBatch> prefetch(int64_t s) {
        return std::async(std::launch::async, [this](int64_t s) { return prepare(td_.schedule, o_, s, &td_, range_); }, s);
    }

    const TrainOptions& o_;
    TrainingData& td_;
    model::Model& m_;
    std::vector<ValSet> val_;
    at::Device device_;
    std::unique_ptr<Optimizer> adam_;
    torch::nn::Linear aux_head_, tempo_head_, key_head_;
    double best_val_ = 1e300;
    std::future<ReadyBatch> next_;
    dist::Group* group_;               // nullptr: one process
    PairRange range_;                  // the pairs whose features this rank computes
    model::BatchPartition partition_;  // their rows in the global batch
};

// The log's columns: val_k2_accuracy and aux_loss came last so that the columns before them keep their places
// for older readers of the log.
const std::vector<std::string> kLogColumns = {"step",       "epoch",        "loss",         "accuracy",
                                              "val_loss",   "val_accuracy", "step_seconds", "feature_seconds",
                                              "val_k2_accuracy", "aux_loss"};

}  // namespace

bool distributed_available() { return dist::available(); }

void train(TrainOptions o, bool resume, const StepCallback& on_step, const std::function<bool()>& stop,
           const DistributedOptions& dist_options) {
    std::unique_ptr<dist::Group> group;
    if (dist_options.world_size > 1) {
        group = std::make_unique<dist::Group>(dist_options);
        // The run's options are rank 0's (on --resume, those of its run folder); the others take them, with
        // their own copies of the data where they named them.
        const auto j = nlohmann::json::parse(group->broadcast_string(options_json(o).dump()));
        if (group->rank() != 0) {
            TrainOptions run = train_options_from_json(j);
            if (!o.caches.empty()) run.caches = o.caches;
            run.run_dir.clear();
            o = run;
        }
        if (o.batch % group->size() != 0)
            throw Error("--batch " + std::to_string(o.batch) + " must be a multiple of --world-size " +
                        std::to_string(group->size()) + " (each rank embeds an equal share of the pairs)");
    }
    const bool writes = !group || group->rank() == 0;
    if (o.caches.empty()) throw Error("no training data given");
    if (o.batch < 2) throw Error("batch must be at least 2 (the loss contrasts each pair with the others)");
    learning_rate_scale(o, std::max(o.steps, o.warmup_steps));  // throws on an unknown --lr-decay before any work
    // The data (caches, samplers, schedule; bad --data-weights throw here), before the run folder is made.
    TrainingData td(o);
    const Schedule& sched = td.schedule;
    if (group) {
        // Every rank must draw the same batches: the same sources with the same tracks.
        std::string mine;
        for (const auto& c : td.caches) mine += std::to_string(c->size()) + ";";
        const bool differs = group->broadcast_string(mine) != mine;
        if (group->any(differs))
            throw Error(differs ? "rank " + std::to_string(group->rank()) + ": its training data (" + mine +
                                      " tracks per source) differs from rank 0's"
                                : "distributed training: another rank's training data differs from rank 0's");
    }
    const RunFolder run(o.run_dir);
    if (writes) run.open(resume);
    const at::Device device(o.device == "cuda" ? at::kCUDA : at::kCPU);
    if (o.device == "cuda" && !at::hasCUDA())
        throw Error("--device cuda: this build's LibTorch has no CUDA, or no GPU is visible (build against a CUDA "
                    "LibTorch via CMAKE_PREFIX_PATH, see README)");

    // Validation sets: each source's validation split.
    std::vector<ValSet> val;
    for (const auto& cache : td.caches) {
        if (!writes) break;  // validation is rank 0's
        const auto splits = cache->splits();
        for (const char* vs : {"valid", "validation", "test"})
            if (std::find(splits.begin(), splits.end(), vs) != splits.end()) {
                // The shared-stem warm-up is validated on the real task (disjoint sub-mixes): how much carries over.
                auto items = data::fixed_protocol(*cache, vs, 80000,
                                                  o.pair_mode == data::PairMode::SharedStem ? data::PairMode::SubMix
                                                                                            : o.pair_mode);
                Rng(data::kProtocolSeed).shuffle(items);  // mix tracks within validation batches
                val.push_back({cache.get(), vs, std::move(items)});
                break;
            }
    }

    // Model and optimizer.
    model::Config cfg;
    cfg.frontend = o.frontend;
    cfg.similarity = o.similarity;
    cfg.dropout = o.dropout;
    model::Model m = o.init_from.empty() ? model::Model(cfg, o.seed) : model::Model::load(o.init_from);
    if (m.config().frontend != o.frontend) throw Error(o.init_from + ": its front-end differs from --frontend");
    if (o.init_from.empty() && o.similarity == model::Similarity::Bilinear &&
        (o.similarity_init_std != model::kReferenceSimilarityInitStd || o.similarity_init_identity != 0)) {
        // The model draws W ~ N(0, 0.05^2) as the reference does; rescale that same draw, and add s * I: a scaled
        // dot product to start from, which hands the encoder its partner's embedding as the gradient.
        torch::NoGradGuard no_grad;
        for (auto& p : m.net().named_parameters())
            if (p.key() == "similarity.w") {
                p.value().mul_(o.similarity_init_std / model::kReferenceSimilarityInitStd);
                p.value().add_(at::eye(p.value().size(0), p.value().options()) * o.similarity_init_identity);
            }
    }
    if (!resume && o.init_from.empty() && o.zero_init_residual) {
        // Measured (docs/training.md section 6): from the default init the 16-block EfficientNet stays at chance
        // on sub-mix pairs for thousands of steps, while a 6-layer CNN learns within 200; with every residual
        // branch starting at zero the EfficientNet starts as its shallow skeleton and learns.
        torch::NoGradGuard no_grad;
        auto& blocks = m.net().effnet->blocks;
        for (size_t i = 0; i < blocks->size(); ++i) {
            auto* b = blocks[i]->as<model::MBConvBlock>();
            if (b->residual) b->bn2->weight.zero_();
        }
    }
    m.to(device);
    if (o.device == "cpu") m.net().use_channels_last(true);
    if (writes && !resume && o.init_from.empty() && o.center_projection) {
        m.net().train();
        center_projection(m.net(), sched, o, device);
    }
    std::vector<std::pair<std::string, at::Tensor>> params;
    std::vector<double> lrs;
    for (const auto& p : m.net().named_parameters()) {
        params.emplace_back(p.key(), p.value());
        // Adam moves every entry of the D x D bilinear matrix by about lr per step, all in the direction that
        // helps, so one step changes a logit a^T W b by about lr * |a|_1 * |b|_1 (~100 for lr 1e-3, D 512):
        // a separate, smaller rate for W keeps the softmax out of saturation while the encoder learns.
        const bool is_w = p.key().rfind("similarity.", 0) == 0;
        lrs.push_back(is_w && o.similarity_lr > 0 ? o.similarity_lr : o.lr);
    }
    // Training-only heads on the pooled features: in the optimizer and the checkpoint under `name`, never in a
    // model file. Each group is drawn from a seed of its own, so a run is reproducible.
    auto train_only_head = [&](const std::string& name, int64_t outputs) {
        torch::nn::Linear head(1280, outputs);
        head->to(device);
        for (const auto& p : head->named_parameters()) {
            params.emplace_back(kTrainOnlyPrefix + name + "." + p.key(), p.value());
            lrs.push_back(o.lr);
        }
        return head;
    };
    torch::nn::Linear aux_head{nullptr};  // --aux-tempo
    if (o.aux_tempo > 0) {
        at::manual_seed(mix_seed(o.seed ^ 0x7E3Bu, 0));
        aux_head = train_only_head("aux_tempo", kTempoMaxLag - kTempoMinLag);
    }
    torch::nn::Linear tempo_head{nullptr}, key_head{nullptr};  // --aux-labels
    if (o.aux_labels > 0) {
        at::manual_seed(mix_seed(o.seed ^ 0x1AB3Lu, 0));
        tempo_head = train_only_head("aux_labels.tempo", kTempoClasses);
        key_head = train_only_head("aux_labels.key", kKeyClasses);
    }
    auto adam = std::make_unique<Optimizer>(params, lrs);

    const nlohmann::json options = options_json(o);
    const MetricsLog log(run.path("log.csv"), kLogColumns);
    ContrastiveObjective objective(o, td, m, std::move(val), device, std::move(adam), aux_head, tempo_head, key_head,
                                   group.get());
    int64_t step = 0;  // data-parallel ranks other than 0 learn it, with the state, from rank 0 below
    if (writes && resume) {
        step = restore_checkpoint(run, objective);
        log.truncate_after(step);
        // Keeps what a resume may change (steps, learning rates) for the next resume and for the record.
        run.write_options(options);
    } else if (writes) {
        run.write_options(options);
        log.create();
    }
    std::function<bool()> stop_all = stop;
    if (group) {
        // Rank 0's weights, optimizer state and step for all; then a stop on any rank stops all after one step.
        dist::share_state(*group, objective);
        at::Tensor first = at::full({1}, step, at::kLong);
        group->broadcast(first);
        step = first.item<int64_t>();
        stop_all = [&] { return group->any(stop && stop()); };
    }
    m.net().train();

    LoopOptions loop;
    loop.steps = o.steps;
    loop.val_every = o.val_every;
    loop.checkpoint_every = o.checkpoint_every;
    loop.options = options;
    loop.writes = writes;
    run_loop(objective, run, log, loop, step,
             [&](const Metrics& row, int64_t total) {
                 if (!on_step) return;
                 auto get = [&](const char* k, double missing) {
                     const auto it = row.find(k);
                     return it == row.end() ? missing : it->second;
                 };
                 StepLog s;
                 s.step = static_cast<int64_t>(get("step", 0));
                 s.epoch = static_cast<int>(get("epoch", 0));
                 s.loss = get("loss", 0);
                 s.accuracy = get("accuracy", 0);
                 s.val_loss = get("val_loss", -1);
                 s.val_accuracy = get("val_accuracy", -1);
                 s.val_k2_accuracy = get("val_k2_accuracy", -1);
                 s.aux_loss = get("aux_loss", -1);
                 s.seconds = get("step_seconds", 0);
                 s.feature_seconds = get("feature_seconds", 0);
                 on_step(s, total);
             },
             stop_all);
    if (writes) write_curves_svg(o.run_dir);
}

}  // namespace cocola::train
