#include "cocola/score.hpp"

#include <cmath>
#include <limits>

#include "cocola/audio.hpp"
#include "cocola/error.hpp"
#include "cocola/features.hpp"
#include "model/torch_includes.hpp"

namespace cocola::eval {
namespace {

size_t hop_samples(const ScoreOptions& o) {
    if (!(o.hop_seconds > 0) || !std::isfinite(o.hop_seconds)) throw Error("hop must be a positive number of seconds");
    return std::max<size_t>(1, static_cast<size_t>(std::llround(o.hop_seconds * audio::kSampleRate)));
}

// Errors from inside libtorch append a C++ stack trace to their message: reports keep the first line.
std::string first_line(const char* what) {
    std::string s(what);
    return s.substr(0, s.find('\n'));
}

struct Loaded {
    std::vector<float> x;
    std::string error;
};

std::vector<Loaded> load_all(const std::vector<std::string>& paths) {
    std::vector<Loaded> out(paths.size());
    // Decoding is independent per file: spread it over the cores.
#pragma omp parallel for schedule(dynamic, 1)
    for (long i = 0; i < static_cast<long>(paths.size()); ++i) {
        try {
            out[i].x = audio::load_mono(paths[i]);
        } catch (const std::exception& e) {
            out[i].error = first_line(e.what());
        }
    }
    return out;
}

// No NaN or infinite embedding leaves with a success: it is an error of that clip (weights that overflow).
void refuse_non_finite(std::vector<Embedded>& out) {
    for (auto& e : out)
        if (e.error.empty() && e.embeddings.defined() && !at::isfinite(e.embeddings).all().item<bool>()) {
            e.error = "the model's embedding is NaN or infinite (weights that overflow on this input)";
            e.embeddings = at::Tensor();
        }
}

}  // namespace

void check_score_options(const model::Model& m, const ScoreOptions& o) {
    if (o.mode != model::EmbeddingMode::Both && m.config().in_channels() == 1)
        throw Error("mode " + model::mode_name(o.mode) + " needs a 2-channel (hpss) model; this one reads the mel front-end");
    if (!(o.hop_seconds > 0) || !std::isfinite(o.hop_seconds))
        throw Error("hop must be a positive number of seconds (got " + std::to_string(o.hop_seconds) + ")");
}

std::vector<size_t> window_offsets(size_t n, size_t hop) {
    std::vector<size_t> offs;
    if (n <= kWindowSamples) return {0};
    for (size_t o = 0; o + kWindowSamples <= n; o += hop) offs.push_back(o);
    return offs;
}

std::vector<Embedded> embed_clips(const model::Model& m, const std::vector<std::vector<float>>& clips,
                                  const ScoreOptions& o) {
    const auto frontend = m.config().frontend;
    const int C = features::num_channels(frontend);
    std::vector<Embedded> out(clips.size());
    if (o.whole) {
        for (size_t i = 0; i < clips.size(); ++i) {
            out[i].samples = clips[i].size();
            try {
                auto f = features::compute(frontend, clips[i].data(), clips[i].size());
                auto t = at::from_blob(f.data(), {1, C, features::kNMels, features::num_frames(clips[i].size())}, at::kFloat);
                out[i].embeddings = m.embed(t, o.mode);
            } catch (const std::exception& e) {
                out[i].error = first_line(e.what());
            }
        }
        refuse_non_finite(out);
        return out;
    }
    // Window mode: every window of every clip in one feature batch and one model batch.
    const size_t hop = hop_samples(o);
    std::vector<std::vector<float>> padded;  // clips shorter than a window, zero-padded
    std::vector<const float*> windows;
    std::vector<size_t> first(clips.size()), count(clips.size());
    for (size_t i = 0; i < clips.size(); ++i) {
        out[i].samples = clips[i].size();
        const float* base = clips[i].data();
        if (clips[i].size() < kWindowSamples) {
            out[i].warnings.push_back("shorter than 5 s (" + std::to_string(clips[i].size() / 16000.0).substr(0, 5) +
                                      " s): zero-padded to 5 s, as the reference does");
            padded.emplace_back(clips[i]);
            padded.back().resize(kWindowSamples, 0.f);
        }
        first[i] = windows.size();
        auto offs = window_offsets(clips[i].size(), hop);
        count[i] = offs.size();
        for (size_t off : offs) windows.push_back(clips[i].size() < kWindowSamples ? nullptr : base + off);
    }
    // Fill the padded pointers now that `padded` no longer reallocates.
    size_t p = 0;
    for (size_t i = 0; i < clips.size(); ++i)
        if (clips[i].size() < kWindowSamples) windows[first[i]] = padded[p++].data();
    if (windows.empty()) return out;
    const int T = features::num_frames(kWindowSamples);
    at::Tensor feats = at::empty({static_cast<int64_t>(windows.size()), C, features::kNMels, T}, at::kFloat);
    features::compute_batch(frontend, windows, kWindowSamples, feats.data_ptr<float>());
    at::Tensor emb = m.embed(feats, o.mode);
    for (size_t i = 0; i < clips.size(); ++i)
        out[i].embeddings = emb.slice(0, static_cast<int64_t>(first[i]), static_cast<int64_t>(first[i] + count[i]));
    refuse_non_finite(out);
    return out;
}

std::vector<Embedded> embed_files(const model::Model& m, const std::vector<std::string>& paths,
                                  const ScoreOptions& o, const ProgressFn& progress) {
    std::vector<Embedded> out;
    const size_t step = std::max<size_t>(1, o.files_per_batch);
    for (size_t s = 0; s < paths.size(); s += step) {
        std::vector<std::string> chunk(paths.begin() + s, paths.begin() + std::min(paths.size(), s + step));
        auto loaded = load_all(chunk);
        std::vector<std::vector<float>> ok;
        std::vector<size_t> ok_index;
        for (size_t i = 0; i < chunk.size(); ++i)
            if (loaded[i].error.empty()) {
                ok.push_back(std::move(loaded[i].x));
                ok_index.push_back(i);
            }
        auto emb = embed_clips(m, ok, o);
        std::vector<Embedded> res(chunk.size());
        for (size_t i = 0; i < chunk.size(); ++i) res[i].error = loaded[i].error;
        for (size_t k = 0; k < ok_index.size(); ++k) {
            res[ok_index[k]] = std::move(emb[k]);
            if (!res[ok_index[k]].error.empty()) res[ok_index[k]].error = chunk[ok_index[k]] + ": " + res[ok_index[k]].error;
        }
        for (size_t i = 0; i < chunk.size(); ++i) {
            res[i].path = chunk[i];
            out.push_back(std::move(res[i]));
        }
        if (progress) progress(out.size());
    }
    return out;
}

std::vector<PairScore> score_clip_pairs(const model::Model& m, std::vector<ClipPair> pairs, const ScoreOptions& o) {
    std::vector<PairScore> res(pairs.size());
    std::vector<std::vector<float>> clips;
    for (size_t k = 0; k < pairs.size(); ++k) {
        auto& r = res[k];
        auto& p = pairs[k];
        r.cond = p.cond;
        r.acc = p.acc;
        if (p.cond_audio.size() != p.acc_audio.size()) {
            const size_t n = std::min(p.cond_audio.size(), p.acc_audio.size());
            r.warnings.push_back("lengths differ (" + std::to_string(p.cond_audio.size()) + " vs " +
                                 std::to_string(p.acc_audio.size()) + " samples at 16 kHz): scoring the common first " +
                                 std::to_string(n) + " samples");
            p.cond_audio.resize(n);
            p.acc_audio.resize(n);
        }
        clips.push_back(std::move(p.cond_audio));
        clips.push_back(std::move(p.acc_audio));
    }
    auto emb = embed_clips(m, clips, o);
    for (size_t k = 0; k < res.size(); ++k) {
        auto& r = res[k];
        auto& ec = emb[2 * k];
        auto& ea = emb[2 * k + 1];
        if (!ec.error.empty() || !ea.error.empty()) {
            r.error = r.cond + " / " + r.acc + ": " + (!ec.error.empty() ? ec.error : ea.error);
            continue;
        }
        for (auto& w : ec.warnings) r.warnings.push_back("cond: " + w);
        for (auto& w : ea.warnings) r.warnings.push_back("acc: " + w);
        at::Tensor sc = m.pair_scores(ec.embeddings, ea.embeddings).to(at::kDouble);
        r.window_scores.assign(sc.data_ptr<double>(), sc.data_ptr<double>() + sc.numel());
        r.score = sc.mean().item<double>();
        if (!std::isfinite(r.score)) {
            r.error = r.cond + " / " + r.acc + ": the score is NaN or infinite (the model's similarity overflows)";
            r.window_scores.clear();
        }
    }
    return res;
}

std::vector<PairScore> score_pairs(const model::Model& m, const std::vector<std::pair<std::string, std::string>>& pairs,
                                   const ScoreOptions& o, const ProgressFn& progress) {
    std::vector<PairScore> out;
    const size_t step = std::max<size_t>(1, o.files_per_batch / 2);
    for (size_t s = 0; s < pairs.size(); s += step) {
        const size_t e = std::min(pairs.size(), s + step);
        std::vector<std::string> paths;
        for (size_t i = s; i < e; ++i) {
            paths.push_back(pairs[i].first);
            paths.push_back(pairs[i].second);
        }
        auto loaded = load_all(paths);
        std::vector<PairScore> res(e - s);
        std::vector<ClipPair> ok_pairs;
        std::vector<size_t> ok;
        for (size_t k = 0; k < res.size(); ++k) {
            auto& r = res[k];
            r.cond = pairs[s + k].first;
            r.acc = pairs[s + k].second;
            auto& c = loaded[2 * k];
            auto& a = loaded[2 * k + 1];
            if (!c.error.empty() || !a.error.empty()) {
                r.error = !c.error.empty() ? c.error : a.error;
                continue;
            }
            ok_pairs.push_back({r.cond, r.acc, std::move(c.x), std::move(a.x)});
            ok.push_back(k);
        }
        auto scored = score_clip_pairs(m, std::move(ok_pairs), o);
        for (size_t j = 0; j < ok.size(); ++j) res[ok[j]] = std::move(scored[j]);
        for (auto& r : res) out.push_back(std::move(r));
        if (progress) progress(out.size());
    }
    return out;
}

namespace {

// All conditionings against all candidates from their embeddings (errors and warnings already recorded per clip).
ScoreMatrix matrix_of(const model::Model& m, const std::vector<std::string>& conds, const std::vector<std::string>& cands,
                      const std::vector<Embedded>& ec, const std::vector<Embedded>& ea) {
    ScoreMatrix r;
    r.conds = conds;
    r.cands = cands;
    for (const auto* list : {&ec, &ea})
        for (const auto& e : *list) {
            if (!e.error.empty()) r.errors.push_back(e.error);
            for (const auto& w : e.warnings) r.warnings.push_back(e.path + ": " + w);
        }
    const double nan = std::numeric_limits<double>::quiet_NaN();
    r.scores.assign(conds.size(), std::vector<double>(cands.size(), nan));
    for (size_t i = 0; i < conds.size(); ++i) {
        if (!ec[i].error.empty()) continue;
        for (size_t j = 0; j < cands.size(); ++j) {
            if (!ea[j].error.empty()) continue;
            const int64_t w = std::min(ec[i].embeddings.size(0), ea[j].embeddings.size(0));
            r.scores[i][j] = m.pair_scores(ec[i].embeddings.slice(0, 0, w), ea[j].embeddings.slice(0, 0, w))
                                 .to(at::kDouble).mean().item<double>();
            if (!std::isfinite(r.scores[i][j])) {
                r.errors.push_back(conds[i] + " / " + cands[j] + ": the score is NaN or infinite (the model's similarity overflows)");
                r.scores[i][j] = nan;
            }
        }
    }
    return r;
}

// Clips embedded under names: the name is the clip's path in reports, and starts its error.
std::vector<Embedded> embed_named_clips(const model::Model& m, const std::vector<std::string>& names,
                                        const std::vector<std::vector<float>>& clips, const ScoreOptions& o) {
    if (names.size() != clips.size()) throw Error("score_matrix: " + std::to_string(names.size()) + " names for " +
                                                  std::to_string(clips.size()) + " clips");
    auto e = embed_clips(m, clips, o);
    for (size_t i = 0; i < e.size(); ++i) {
        e[i].path = names[i];
        if (!e[i].error.empty()) e[i].error = names[i] + ": " + e[i].error;
    }
    return e;
}

}  // namespace

ScoreMatrix score_matrix(const model::Model& m, const std::vector<std::string>& conds,
                         const std::vector<std::string>& cands, const ScoreOptions& o, const ProgressFn& progress) {
    size_t done = 0;
    auto tick = [&]() {
        if (progress) progress(++done);
    };
    auto ec = embed_files(m, conds, o, {});
    tick();
    auto ea = embed_files(m, cands, o, {});
    tick();
    return matrix_of(m, conds, cands, ec, ea);
}

ScoreMatrix score_matrix_clips(const model::Model& m, const std::vector<std::string>& cond_names,
                               const std::vector<std::vector<float>>& conds, const std::vector<std::string>& cand_names,
                               const std::vector<std::vector<float>>& cands, const ScoreOptions& o) {
    auto ec = embed_named_clips(m, cond_names, conds, o);
    auto ea = embed_named_clips(m, cand_names, cands, o);
    return matrix_of(m, cond_names, cand_names, ec, ea);
}

}  // namespace cocola::eval
