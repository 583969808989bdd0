#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <set>

#include "cocola/error.hpp"
#include "cocola/evaluate.hpp"
#include "cocola/features.hpp"
#include "cocola/rng.hpp"
#include "model/torch_includes.hpp"

namespace cocola::eval {

namespace {

bool has_duplicate_track(const std::vector<size_t>& batch, const std::vector<uint32_t>& track) {
    std::set<uint32_t> seen;
    for (size_t i : batch)
        if (!seen.insert(track[i]).second) return true;
    return false;
}

}  // namespace

Batching make_batches(const std::vector<uint32_t>& track, int k, uint64_t seed) {
    if (k < 2) throw Error("K must be at least 2 (a batch of one has nothing to tell apart)");
    const size_t K = static_cast<size_t>(k);
    std::vector<size_t> order(track.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    // Shuffled so that a batch mixes windows from all over the split, not neighbours in track order; seeded so
    // that every model and every run sees the same batches.
    Rng rng(mix_seed(seed, 0xba7c4e5ull));
    rng.shuffle(order);

    Batching out;
    std::vector<std::vector<size_t>> open;
    for (size_t i : order) {
        bool placed = false;
        for (size_t b = 0; b < open.size(); ++b) {
            auto& batch = open[b];
            const bool clash = std::any_of(batch.begin(), batch.end(), [&](size_t j) { return track[j] == track[i]; });
            if (clash) continue;
            batch.push_back(i);
            if (batch.size() == K) {
                out.batches.push_back(std::move(batch));
                out.same_track.push_back(false);
                open.erase(open.begin() + static_cast<std::ptrdiff_t>(b));
            }
            placed = true;
            break;
        }
        if (!placed) open.push_back({i});
    }
    // What is left comes from too few tracks to spread (e.g. one long track dominating the split): batches of
    // windows of the same track are still a fair K-way test, only harder, so they are kept and counted.
    std::vector<size_t> rest;
    for (const auto& b : open) rest.insert(rest.end(), b.begin(), b.end());
    size_t r = 0;
    for (; r + K <= rest.size(); r += K) {
        std::vector<size_t> batch(rest.begin() + static_cast<std::ptrdiff_t>(r),
                                  rest.begin() + static_cast<std::ptrdiff_t>(r + K));
        out.same_track.push_back(has_duplicate_track(batch, track));
        out.batches.push_back(std::move(batch));
    }
    out.dropped = rest.size() - r;
    return out;
}

void summarize(EvalResult& r) {
    const size_t n = r.batch_accuracy.size();
    r.batches = n;
    if (n == 0) {
        r.accuracy = r.sd = r.ci95 = 0;
        return;
    }
    double sum = 0;
    for (double a : r.batch_accuracy) sum += a;
    r.accuracy = sum / n;
    double ss = 0;
    for (double a : r.batch_accuracy) ss += (a - r.accuracy) * (a - r.accuracy);
    r.sd = n > 1 ? std::sqrt(ss / (n - 1)) : 0.0;
    r.ci95 = 1.96 * r.sd / std::sqrt(static_cast<double>(n));
}

namespace {

// Accuracy of each batch, appended to r.batch_accuracy. Rows of `anchors`/`positives` are addressed through
// `row_of` (item index -> row), so a chunk of items can be scored without copying whole tensors.
void score_batches(const model::Model& m, const at::Tensor& anchors, const at::Tensor& positives,
                   const std::vector<std::vector<size_t>>& batches, size_t first, size_t last,
                   const std::vector<int64_t>& row_of, EvalResult& r) {
    for (size_t b = first; b < last; ++b) {
        const auto& batch = batches[b];
        std::vector<int64_t> rows(batch.size());
        for (size_t i = 0; i < batch.size(); ++i) rows[i] = row_of.empty() ? static_cast<int64_t>(batch[i]) : row_of[batch[i]];
        const at::Tensor idx = at::tensor(rows, at::kLong);
        const at::Tensor S = m.similarity_matrix(anchors.index_select(0, idx), positives.index_select(0, idx));
        // Eq. 8: row i is right when its highest similarity is in column i. argmax takes the first maximum, so
        // an exact tie with an earlier column counts as wrong: a model that cannot tell pairs apart gets no credit.
        // Read on the host, whatever the model's device.
        const at::Tensor Sd = S.to(at::kCPU, at::kDouble).contiguous();
        const at::Tensor best = Sd.argmax(1).contiguous();
        const double* s = Sd.data_ptr<double>();
        const int64_t* chosen = best.data_ptr<int64_t>();
        const size_t n = batch.size();
        size_t right = 0;
        for (size_t i = 0; i < n; ++i) {
            RowOutcome row;
            row.batch = b;
            row.item = batch[i];
            row.chosen = batch[static_cast<size_t>(chosen[i])];
            row.own = s[i * n + i];
            row.best_other = -std::numeric_limits<double>::infinity();
            for (size_t j = 0; j < n; ++j)
                if (j != i) row.best_other = std::max(row.best_other, s[i * n + j]);
            right += row.right();
            r.rows.push_back(row);
        }
        r.batch_accuracy.push_back(static_cast<double>(right) / static_cast<double>(n));
        r.items += n;
    }
}

}  // namespace

EvalResult evaluate_embeddings(const model::Model& m, const at::Tensor& anchors, const at::Tensor& positives,
                               const std::vector<std::vector<size_t>>& batches) {
    if (anchors.dim() != 2 || !anchors.sizes().equals(positives.sizes()))
        throw Error("evaluate_embeddings: anchors and positives must both be [N, D] of the same shape");
    const size_t N = static_cast<size_t>(anchors.size(0));
    for (const auto& b : batches)
        for (size_t i : b)
            if (i >= N) throw Error("evaluate_embeddings: batch index " + std::to_string(i) + " beyond " + std::to_string(N) + " rows");
    EvalResult r;
    score_batches(m, anchors, positives, batches, 0, batches.size(), {}, r);
    summarize(r);
    return r;
}

Batching plan_batches(const data::StemCache& cache, const EvalOptions& o, std::vector<data::EvalItem>* items_out) {
    auto items = data::fixed_protocol(cache, o.split, o.window, o.pairs);
    if (items.size() < static_cast<size_t>(std::max(o.k, 2))) {
        std::string splits;
        for (const auto& s : cache.splits()) splits += (splits.empty() ? "" : ", ") + s;
        throw Error(cache.dir() + ": split '" + o.split + "' has " + std::to_string(items.size()) +
                    " evaluation items, fewer than K = " + std::to_string(o.k) + " (splits in this cache: " + splits +
                    "; items need windows with at least 2 active stems)");
    }
    std::vector<uint32_t> track(items.size());
    for (size_t i = 0; i < items.size(); ++i) track[i] = items[i].track;
    Batching b = make_batches(track, o.k, o.seed);
    if (items_out) *items_out = std::move(items);
    return b;
}

EvalResult evaluate(const model::Model& m, const data::StemCache& cache, const EvalOptions& o,
                    const EvalProgress& progress) {
    if (cache.sample_rate() != 16000)
        throw Error(cache.dir() + ": cache sample rate " + std::to_string(cache.sample_rate()) + " Hz, the model needs 16000");
    std::vector<data::EvalItem> items;
    const Batching plan = plan_batches(cache, o, &items);
    const auto frontend = m.config().frontend;
    const int C = features::num_channels(frontend);
    const int64_t L = o.window;
    const int64_t T = features::num_frames(static_cast<size_t>(L));

    EvalResult r;
    r.items_dropped = plan.dropped;
    for (bool s : plan.same_track) r.same_track_batches += s;
    // Several batches per model call: the encoder is far more efficient on dozens of windows than on K = 2.
    const size_t per_call = std::max<size_t>(1, o.items_per_call / static_cast<size_t>(o.k));
    const size_t total = o.max_batches > 0 ? std::min(o.max_batches, plan.batches.size()) : plan.batches.size();
    std::vector<float> audio;
    std::vector<int64_t> row_of(items.size(), -1);
    for (size_t b0 = 0; b0 < total; b0 += per_call) {
        const size_t b1 = std::min(total, b0 + per_call);
        std::vector<size_t> chunk;
        for (size_t b = b0; b < b1; ++b) chunk.insert(chunk.end(), plan.batches[b].begin(), plan.batches[b].end());
        const size_t n = chunk.size();
        // Anchors in rows [0, n), positives in rows [n, 2n): one feature batch and one model call for both.
        audio.assign(2 * n * static_cast<size_t>(L), 0.0f);
#pragma omp parallel for schedule(static)
        for (long i = 0; i < static_cast<long>(n); ++i)
            data::render_item(cache, items[chunk[i]], L, audio.data() + i * L, audio.data() + (n + i) * L);
        if (o.positive_noise > 0)
#pragma omp parallel for schedule(static)
            for (long i = 0; i < static_cast<long>(n); ++i)
                Rng(mix_seed(o.seed ^ 0x901Eu, static_cast<uint64_t>(chunk[i])))
                    .add_gaussian(audio.data() + (n + i) * L, static_cast<size_t>(L), o.positive_noise);
        if (o.clip_transform)
            for (size_t i = 0; i < 2 * n; ++i) o.clip_transform(audio.data() + i * L, L, chunk[i % n], i >= n);
        std::vector<const float*> clips(2 * n);
        for (size_t i = 0; i < 2 * n; ++i) clips[i] = audio.data() + i * L;
        at::Tensor feats = at::empty({static_cast<int64_t>(2 * n), C, features::kNMels, T}, at::kFloat);
        features::compute_batch(frontend, clips, static_cast<size_t>(L), feats.data_ptr<float>());
        const at::Tensor emb = m.embed(feats, o.mode);
        const at::Tensor A = emb.slice(0, 0, static_cast<int64_t>(n));
        const at::Tensor P = emb.slice(0, static_cast<int64_t>(n), static_cast<int64_t>(2 * n));
        for (size_t i = 0; i < n; ++i) row_of[chunk[i]] = static_cast<int64_t>(i);
        score_batches(m, A, P, plan.batches, b0, b1, row_of, r);
        if (progress) progress(b1, total);
    }
    summarize(r);
    return r;
}

nlohmann::ordered_json accuracy_table_json(const EvalOptions& o, const std::vector<TableModel>& models,
                                           const std::vector<TableDataset>& datasets,
                                           const std::vector<std::vector<TableCell>>& cells) {
    nlohmann::ordered_json j;
    j["task"] = "coherent sub-mix classification (COCOLA Eq. 8)";
    j["k"] = o.k;
    j["split"] = o.split;
    j["mode"] = model::mode_name(o.mode);
    if (o.positive_noise > 0) j["positive_noise"] = o.positive_noise;
    nlohmann::ordered_json jm = nlohmann::ordered_json::array();
    for (const auto& m : models)
        jm.push_back({{"name", m.name},
                      {"path", std::filesystem::absolute(m.path).lexically_normal().string()},
                      {"frontend", features::frontend_name(m.config.frontend)},
                      {"similarity", model::similarity_name(m.config.similarity)}});
    j["models"] = jm;
    nlohmann::ordered_json jd = nlohmann::ordered_json::array();
    for (const auto& d : datasets)
        jd.push_back({{"name", d.name},
                      {"input", d.input},
                      {"cache", d.cache},
                      {"layout", d.layout},
                      {"batches", d.batches},
                      {"items", d.items},
                      {"items_dropped", d.items_dropped},
                      {"same_track_batches", d.same_track_batches}});
    j["datasets"] = jd;
    nlohmann::ordered_json jr = nlohmann::ordered_json::array();
    for (size_t i = 0; i < models.size(); ++i) {
        nlohmann::ordered_json row = nlohmann::ordered_json::array();
        for (size_t d = 0; d < datasets.size(); ++d) {
            const auto& c = cells.at(i).at(d);
            row.push_back({{"model", models[i].name},
                           {"dataset", datasets[d].name},
                           {"accuracy", c.result.accuracy},
                           {"ci95", c.result.ci95},
                           {"sd", c.result.sd},
                           {"batches", c.result.batches},
                           {"items", c.result.items},
                           {"seconds", c.seconds}});
        }
        jr.push_back(row);
    }
    j["results"] = jr;
    return j;
}

TableDataset describe_test_set(const std::string& input, const data::StemCache& cache, const EvalOptions& o,
                               std::vector<data::EvalItem>* items) {
    TableDataset d;
    d.input = input;
    d.cache = cache.dir();
    d.layout = cache.layout();
    d.name = table_name(cache.dir() == input && !cache.root().empty() ? cache.root() : input);
    const auto plan = plan_batches(cache, o, items);
    d.batches = plan.batches.size();
    d.items = d.batches * static_cast<size_t>(o.k);
    d.items_dropped = plan.dropped;
    for (bool s : plan.same_track) d.same_track_batches += s;
    return d;
}

std::string table_name(const std::string& path) {
    std::filesystem::path p = std::filesystem::path(path).lexically_normal();
    std::string n = p.filename().string();
    if (n.empty()) n = p.parent_path().filename().string();  // "set/" normalizes to "set/" with an empty name
    return n.empty() ? path : n;
}

std::vector<std::string> unique_names(std::vector<std::string> names) {
    for (size_t i = 0; i < names.size(); ++i) {
        int n = 1;
        for (size_t j = 0; j < i; ++j)
            if (names[j] == names[i] || names[j].rfind(names[i] + "#", 0) == 0) ++n;
        if (n > 1) names[i] += "#" + std::to_string(n);
    }
    return names;
}

}  // namespace cocola::eval
