// Coherent sub-mix classification (Eq. 8): batching, accuracy on embeddings, a whole evaluation that must score
// 100%, random embeddings at chance, `ensure_cache`, and the `cocola eval` cross table end to end.
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <map>
#include <set>
#include <sstream>

#include "cocola/audio.hpp"
#include "cocola/data.hpp"
#include "cocola/distribution_distance.hpp"
#include "cocola/error.hpp"
#include "cocola/evaluate.hpp"
#include "cocola/model.hpp"
#include "model/cocola_net.hpp"
#include "model/torch_includes.hpp"
#include "test_util.hpp"

namespace fs = std::filesystem;
using namespace cocola;
using testutil::run_cli;

namespace {

std::string golden_model(const std::string& kind) {
    return testutil::golden("models/cocola_" + kind + "_seed0.safetensors");
}

// A generic-layout set <root>/<split>/<track>/{a,b}.wav in which both stems of a track are the same signal, so
// every protocol item's anchor and positive sub-mixes (one stem each) are identical. Tracks differ in pitch,
// timbre and rhythm so that their embeddings differ.
void write_twin_stem_set(const std::string& root, int tracks, double seconds, const std::string& split = "test") {
    const size_t n = static_cast<size_t>(seconds * 16000);
    for (int t = 0; t < tracks; ++t) {
        std::vector<float> x(n);
        const double f0 = 110.0 * std::pow(2.0, t * 5 / 12.0);
        const double beat = 0.25 + 0.05 * t;
        for (size_t i = 0; i < n; ++i) {
            const double s = i / 16000.0;
            const double env = std::exp(-std::fmod(s, beat) * (4.0 + t));
            double v = 0;
            for (int h = 1; h <= 1 + t % 4; ++h) v += std::sin(2 * M_PI * f0 * h * s) / h;
            x[i] = static_cast<float>(0.3 * env * v);
        }
        const fs::path dir = fs::path(root) / split / ("track" + std::to_string(t));
        fs::create_directories(dir);
        audio::write_wav((dir / "a.wav").string(), x);
        audio::write_wav((dir / "b.wav").string(), x);
    }
}

// The golden mel model's encoder with cosine similarity. A freshly initialized encoder is no use here: its
// untrained BatchNorms saturate, and every input comes out as the same embedding (measured: cosine 1 between all
// tracks), so ties would decide. The golden weights tell these tracks apart (cosines 0.45-0.93 between tracks).
model::Model golden_mel_with_cosine() {
    const model::Model gold = model::Model::load(golden_model("mel"));
    model::Config c = gold.config();
    c.similarity = model::Similarity::Cosine;
    model::Model m(c, 0);
    torch::NoGradGuard no_grad;
    const auto src_p = gold.net().named_parameters(), src_b = gold.net().named_buffers();
    for (auto& kv : m.net().named_parameters()) {
        const at::Tensor* src = src_p.find(kv.key());
        if (!src) throw Error("golden mel model lacks " + kv.key());
        kv.value().copy_(*src);
    }
    for (auto& kv : m.net().named_buffers()) {
        const at::Tensor* src = src_b.find(kv.key());
        if (!src) throw Error("golden mel model lacks " + kv.key());
        kv.value().copy_(*src);
    }
    m.weights_changed();
    return m;
}

}  // namespace

TEST(Batching, DistinctTracksDeterministicAndComplete) {
    // 10 tracks with 1..10 items each: skewed, as real splits are.
    std::vector<uint32_t> track;
    for (uint32_t t = 0; t < 10; ++t)
        for (uint32_t i = 0; i <= t; ++i) track.push_back(t);
    for (int k : {2, 3, 4}) {
        auto b = eval::make_batches(track, k, 7);
        auto again = eval::make_batches(track, k, 7);
        EXPECT_EQ(b.batches, again.batches);
        std::set<size_t> used;
        size_t mixed = 0;
        for (size_t i = 0; i < b.batches.size(); ++i) {
            ASSERT_EQ(b.batches[i].size(), static_cast<size_t>(k));
            std::set<uint32_t> tr;
            for (size_t it : b.batches[i]) {
                EXPECT_TRUE(used.insert(it).second) << "item in two batches";
                tr.insert(track[it]);
            }
            EXPECT_EQ(tr.size() < static_cast<size_t>(k), static_cast<bool>(b.same_track[i]));
            mixed += tr.size() == static_cast<size_t>(k);
        }
        EXPECT_EQ(used.size() + b.dropped, track.size());
        EXPECT_LT(b.dropped, static_cast<size_t>(k));
        // Almost every batch spreads over distinct tracks; only the tail of the largest tracks cannot.
        EXPECT_GE(mixed, b.batches.size() * 3 / 4) << "k=" << k;
    }
    EXPECT_NE(eval::make_batches(track, 2, 7).batches, eval::make_batches(track, 2, 8).batches);
    // One track only: batches still form, all of them flagged.
    auto one = eval::make_batches(std::vector<uint32_t>(9, 3), 2, 0);
    EXPECT_EQ(one.batches.size(), 4u);
    EXPECT_EQ(one.dropped, 1u);
    for (bool s : one.same_track) EXPECT_TRUE(s);
    EXPECT_THROW(eval::make_batches(track, 1, 0), Error);
}

TEST(Accuracy, IdenticalEmbeddingsWithCosineScoreAll) {
    model::Config c;
    c.similarity = model::Similarity::Cosine;
    model::Model m(c, 3);
    at::manual_seed(1);
    const at::Tensor a = at::randn({64, 512});
    std::vector<uint32_t> track(64);
    for (size_t i = 0; i < track.size(); ++i) track[i] = static_cast<uint32_t>(i);
    auto b = eval::make_batches(track, 4, 0);
    auto r = eval::evaluate_embeddings(m, a, a.clone(), b.batches);
    EXPECT_EQ(r.batches, 16u);
    EXPECT_EQ(r.items, 64u);
    EXPECT_DOUBLE_EQ(r.accuracy, 1.0);
    EXPECT_DOUBLE_EQ(r.ci95, 0.0);
    // Every row is reported: its item, its own similarity (cosine 1) above the best other one.
    ASSERT_EQ(r.rows.size(), 64u);
    std::set<size_t> items;
    for (const auto& row : r.rows) {
        EXPECT_TRUE(row.right());
        EXPECT_NEAR(row.own, 1.0, 1e-5);
        EXPECT_LT(row.best_other, row.own);
        EXPECT_EQ(b.batches.at(row.batch).size(), 4u);
        items.insert(row.item);
    }
    EXPECT_EQ(items.size(), 64u);
    // Rows scrambled against their positives: each anchor's own pair is now someone else's; nothing is right.
    const at::Tensor shifted = at::roll(a, 1, 0);
    std::vector<std::vector<size_t>> consecutive;
    for (size_t i = 0; i < 64; i += 4) consecutive.push_back({i, i + 1, i + 2, i + 3});
    auto wrong = eval::evaluate_embeddings(m, a, shifted, consecutive);
    // Positive of row i is anchor i-1, which sits in column i-1 of the same batch except for the first row.
    EXPECT_LE(wrong.accuracy, 0.25 + 1e-9);
    size_t right = 0;
    for (const auto& row : wrong.rows) {
        right += row.right();
        // A wrong row chose another item of its batch, whose positive beat its own.
        if (!row.right()) {
            EXPECT_NE(row.chosen, row.item);
            EXPECT_GE(row.best_other, row.own);
            const auto& batch = consecutive.at(row.batch);
            EXPECT_NE(std::find(batch.begin(), batch.end(), row.chosen), batch.end());
        }
    }
    EXPECT_NEAR(static_cast<double>(right) / 64.0, wrong.accuracy, 1e-12);
}

TEST(Accuracy, RandomEmbeddingsScoreAboutOneOverK) {
    model::Model m(model::Config{}, 5);  // bilinear with its random W: row choices are still exchangeable
    at::manual_seed(2);
    const int64_t N = 4000;
    const at::Tensor a = at::randn({N, 512}).tanh(), p = at::randn({N, 512}).tanh();
    std::vector<uint32_t> track(N);
    for (int64_t i = 0; i < N; ++i) track[i] = static_cast<uint32_t>(i);
    for (int k : {2, 4}) {
        auto b = eval::make_batches(track, k, 11);
        auto r = eval::evaluate_embeddings(m, a, p, b.batches);
        EXPECT_EQ(r.batches, static_cast<size_t>(N / k));
        // The standard error is about 0.008 (K=2) and 0.007 (K=4): 0.03 is about four of them.
        EXPECT_NEAR(r.accuracy, 1.0 / k, 0.03) << "K=" << k;
        EXPECT_GT(r.ci95, 0.005);
        EXPECT_LT(r.ci95, 0.03);
        EXPECT_NEAR(r.ci95, 1.96 * r.sd / std::sqrt(static_cast<double>(r.batches)), 1e-12);
    }
}

TEST(Accuracy, EnsureCacheIndexesOnceAndTellsRootsApart) {
    const std::string dir = testutil::temp_dir("eval_ensure");
    write_twin_stem_set(dir + "/x/set", 3, 6.0);
    write_twin_stem_set(dir + "/y/set", 3, 6.0);
    const std::string parent = dir + "/caches";
    const std::string c1 = data::ensure_cache(dir + "/x/set", parent);
    EXPECT_TRUE(data::is_cache(c1));
    EXPECT_EQ(fs::path(c1).parent_path(), fs::path(parent));
    EXPECT_EQ(fs::path(c1).filename().string().rfind("set-", 0), 0u);
    size_t calls = 0, reused_total = 0;
    EXPECT_EQ(data::ensure_cache(dir + "/x/set/", parent, [&](size_t, size_t total, const std::string&) {
                  ++calls;
                  reused_total = total;
              }),
              c1);
    EXPECT_EQ(calls, 3u);
    EXPECT_EQ(reused_total, 3u);
    EXPECT_EQ(data::ensure_cache(c1, parent), c1);  // a cache is used as it is
    EXPECT_NE(data::ensure_cache(dir + "/y/set", parent), c1);
    EXPECT_THROW(data::ensure_cache(dir + "/missing", parent), Error);
}

TEST(Accuracy, WholeEvaluationOfIdenticalSubMixesIs100PercentWithoutPositiveNoise) {
    const std::string dir = testutil::temp_dir("eval_twins");
    write_twin_stem_set(dir + "/twins", 8, 11.0);
    data::StemCache cache(data::ensure_cache(dir + "/twins", dir + "/caches"));
    // A real model with cosine similarity: identical inputs give identical embeddings, whose cosine (1) beats
    // any other track's.
    const model::Model m = golden_mel_with_cosine();
    eval::EvalOptions o;
    o.items_per_call = 10;  // several model calls, one of them partial
    size_t last = 0, total = 0;
    auto r = eval::evaluate(m, cache, o, [&](size_t done, size_t t) {
        EXPECT_GT(done, last);
        last = done;
        total = t;
    });
    // 11 s tracks: chunks at 0 and 5 s, and at 2.5 and 7.5 s -> 4 items each, 32 items, 16 batches of 2.
    EXPECT_EQ(r.items, 32u);
    EXPECT_EQ(r.batches, 16u);
    EXPECT_EQ(last, total);
    EXPECT_EQ(r.same_track_batches, 0u);
    EXPECT_DOUBLE_EQ(r.accuracy, 1.0);
    EXPECT_DOUBLE_EQ(r.ci95, 0.0);
    // --positive-noise (a diagnostic): loud noise on the positives takes the twins' identity away; it is drawn
    // per item, so how the batches are split into model calls does not change the result.
    o.positive_noise = 1.0;  // 10 dB above the twins' peak
    const auto noisy = eval::evaluate(m, cache, o);
    EXPECT_LT(noisy.accuracy, 0.9);
    o.items_per_call = 32;
    EXPECT_EQ(eval::evaluate(m, cache, o).batch_accuracy, noisy.batch_accuracy);
    o.positive_noise = 0;
    // A split without items is an error naming the cache and the split.
    o.split = "valid";
    try {
        eval::evaluate(m, cache, o);
        FAIL() << "expected an error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("split 'valid'"), std::string::npos) << e.what();
    }
}

TEST(EvalCli, CrossTableOfTwoModelsAndTwoSets) {
    const std::string dir = testutil::temp_dir("eval_cli");
    for (int s = 0; s < 2; ++s) {
        auto r = run_cli("--threads 2 synth --tracks 6 --seconds 6 --split test --seed " + std::to_string(s) + " -o " +
                         dir + "/set" + std::to_string(s));
        ASSERT_EQ(r.code, 0) << r.out;
    }
    // The second test set is given as a cache, the first as a dataset root.
    auto idx = run_cli("data index " + dir + "/set1 -o " + dir + "/cache1");
    ASSERT_EQ(idx.code, 0) << idx.out;
    const std::string models = golden_model("mel") + "," + golden_model("hpss");
    auto r = run_cli("--threads 2 eval --models " + models + " --data " + dir + "/set0," + dir + "/cache1 --cache-dir " +
                     dir + "/caches -o " + dir + "/out --rows " + dir + "/rows.csv");
    ASSERT_EQ(r.code, 0) << r.out;
    // The markdown on stdout: a header with both sets, one row per model.
    EXPECT_NE(r.out.find("| model | set0 | set1 |"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("| cocola_mel_seed0 |"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("| cocola_hpss_seed0 |"), std::string::npos) << r.out;

    std::ifstream in(dir + "/out/eval.json");
    ASSERT_TRUE(in) << "no eval.json";
    auto j = nlohmann::json::parse(in);
    EXPECT_EQ(j["k"], 2);
    ASSERT_EQ(j["models"].size(), 2u);
    ASSERT_EQ(j["datasets"].size(), 2u);
    EXPECT_EQ(j["models"][0]["frontend"], "mel");
    EXPECT_EQ(j["models"][1]["frontend"], "hpss");
    ASSERT_EQ(j["results"].size(), 2u);
    for (int i = 0; i < 2; ++i) {
        ASSERT_EQ(j["results"][i].size(), 2u);
        for (int d = 0; d < 2; ++d) {
            const auto& c = j["results"][i][d];
            // 6 tracks of 6 s: one chunk at 0 s and one (zero-padded) at 2.5 s each -> 12 items, 6 batches.
            EXPECT_EQ(c["batches"], 6);
            EXPECT_EQ(c["items"], 12);
            const double acc = c["accuracy"].get<double>();
            EXPECT_GE(acc, 0.0);
            EXPECT_LE(acc, 1.0);
            // Batch accuracies with K = 2 are multiples of 1/2.
            EXPECT_NEAR(acc * 12, std::round(acc * 12), 1e-9);
        }
    }
    // --rows: one CSV line per row of every batch (2 models x 2 sets x 12 rows); each cell's share of right
    // rows is its accuracy.
    std::ifstream rows_in(dir + "/rows.csv");
    ASSERT_TRUE(rows_in) << "no rows.csv";
    std::string line;
    std::getline(rows_in, line);
    EXPECT_EQ(line, "model,dataset,batch,track,offset_s,anchor,positive,right,own_similarity,best_other_similarity,"
                    "chosen_track");
    std::map<std::string, std::pair<int, int>> right_of;  // "model/set" -> (right, rows)
    while (std::getline(rows_in, line)) {
        std::vector<std::string> f;
        std::stringstream ss(line);
        for (std::string x; std::getline(ss, x, ',');) f.push_back(x);
        ASSERT_EQ(f.size(), 11u) << line;
        const bool ok = f[7] == "1";
        EXPECT_EQ(ok, f[3] == f[10]) << "right exactly when the chosen track is its own: " << line;
        EXPECT_EQ(ok, std::stod(f[8]) > std::stod(f[9]) || (ok && std::stod(f[8]) == std::stod(f[9]))) << line;
        auto& c = right_of[f[0] + "/" + f[1]];
        c.first += ok;
        c.second += 1;
    }
    ASSERT_EQ(right_of.size(), 4u);
    for (int i = 0; i < 2; ++i)
        for (int d = 0; d < 2; ++d) {
            const auto& c = j["results"][i][d];
            const auto& n = right_of.at(c["model"].get<std::string>() + "/" + c["dataset"].get<std::string>());
            EXPECT_EQ(n.second, 12);
            EXPECT_NEAR(n.first / 12.0, c["accuracy"].get<double>(), 1e-9);
        }

    // The root was indexed under --cache-dir; the cache was used in place.
    EXPECT_EQ(fs::path(j["datasets"][0]["cache"].get<std::string>()).parent_path(), fs::path(dir + "/caches"));
    EXPECT_EQ(j["datasets"][1]["cache"], dir + "/cache1");

    std::ifstream md(dir + "/out/eval.md");
    std::string mds((std::istreambuf_iterator<char>(md)), {});
    EXPECT_NE(mds.find("| cocola_hpss_seed0 |"), std::string::npos);
    std::ifstream svg(dir + "/out/eval_heatmap.svg");
    std::string svgs((std::istreambuf_iterator<char>(svg)), {});
    EXPECT_EQ(svgs.rfind("<svg", 0), 0u);
    size_t cells = 0;
    for (size_t p = 0; (p = svgs.find("<title>", p)) != std::string::npos; ++p) ++cells;
    EXPECT_EQ(cells, 4u);
    EXPECT_NE(svgs.find(">set1</text>"), std::string::npos);
    EXPECT_NE(svgs.find(">cocola_mel_seed0</text>"), std::string::npos);
    EXPECT_NE(svgs.find("</svg>"), std::string::npos);

    // --json prints the same object.
    auto rj = run_cli("--threads 2 eval -m " + golden_model("mel") + " --data " + dir + "/cache1 --json");
    ASSERT_EQ(rj.code, 0) << rj.out;
    auto j2 = nlohmann::json::parse(rj.out.substr(rj.out.find("{\n")));
    EXPECT_EQ(j2["results"][0][0]["accuracy"], j["results"][0][1]["accuracy"]);
}

TEST(EvalCli, ClearErrors) {
    const std::string dir = testutil::temp_dir("eval_cli_err");
    write_twin_stem_set(dir + "/set", 2, 6.0);
    auto r = run_cli("eval -m " + dir + "/nope.safetensors --data " + dir + "/set --cache-dir " + dir + "/c");
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.out.find("nope.safetensors: no such model file"), std::string::npos) << r.out;
    r = run_cli("eval -m " + golden_model("mel") + " --data " + dir + "/missing --cache-dir " + dir + "/c");
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.out.find("missing: no such dataset or cache"), std::string::npos) << r.out;
    r = run_cli("eval -m " + golden_model("mel") + " --data " + dir + "/set --split valid --cache-dir " + dir + "/c");
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.out.find("split 'valid'"), std::string::npos) << r.out;
    r = run_cli("eval -m " + golden_model("mel") + " --data " + dir + "/set --k 1");
    EXPECT_NE(r.code, 0);
}

TEST(EvalCli, UsesTheShippedDefaultModelWithoutDashM) {
    const std::string def = std::string(COCOLA_SOURCE_DIR) + "/models/cocola_default.safetensors";
    ASSERT_TRUE(std::filesystem::exists(def)) << def;
    const std::string dir = testutil::temp_dir("eval_cli_default");
    write_twin_stem_set(dir + "/set", 2, 6.0);
    const std::string data = " --data " + dir + "/set --cache-dir " + dir + "/c --json";
    auto implicit = run_cli("eval" + data), explicit_ = run_cli("eval -m " + def + data);
    ASSERT_EQ(implicit.code, 0) << implicit.out;
    ASSERT_EQ(explicit_.code, 0) << explicit_.out;
    auto a = nlohmann::json::parse(implicit.out.substr(implicit.out.find("{\n")));
    auto b = nlohmann::json::parse(explicit_.out.substr(explicit_.out.find("{\n")));
    for (const char* key : {"model", "accuracy", "ci95", "batches", "items"})
        EXPECT_EQ(a["results"][0][0][key], b["results"][0][0][key]) << key;  // all but the seconds it took
}

// ---------------------------------------------------------------- FAD, FAD-inf, KAD
namespace {
at::Tensor gaussian_rows(int64_t n, const at::Tensor& mean, const at::Tensor& cov, uint64_t seed) {
    at::Generator gen = at::detail::createCPUGenerator(seed);
    const at::Tensor l = at::linalg_cholesky(cov.to(at::kDouble));
    return at::matmul(at::randn({n, mean.numel()}, gen, at::kDouble), l.t()) + mean.to(at::kDouble);
}
}  // namespace

TEST(DistributionDistance, FrechetDistanceMatchesClosedForms) {
    // Diagonal covariances: ||dmu||^2 + sum (sigma1 - sigma2)^2.
    const at::Tensor m1 = at::tensor({0.0, 1.0, 2.0}, at::kDouble), m2 = at::tensor({1.0, 1.0, 0.0}, at::kDouble);
    const at::Tensor s1 = at::diag(at::tensor({1.0, 4.0, 9.0}, at::kDouble)), s2 = at::diag(at::tensor({4.0, 1.0, 9.0}, at::kDouble));
    EXPECT_NEAR(eval::frechet_distance(m1, s1, m2, s2), 5.0 + 1.0 + 1.0 + 0.0, 1e-9);
    // Two non-commuting 2x2 covariances: Tr sqrt(S1 S2) = sqrt(Tr(S1 S2) + 2 sqrt(det S1 det S2)).
    const at::Tensor a = at::tensor({2.0, 0.5, 0.5, 1.0}, at::kDouble).view({2, 2});
    const at::Tensor b = at::tensor({1.0, -0.3, -0.3, 3.0}, at::kDouble).view({2, 2});
    ASSERT_FALSE(at::allclose(at::matmul(a, b), at::matmul(b, a)));
    const double tr_ab = at::matmul(a, b).trace().item<double>();
    const double det = at::det(a).item<double>() * at::det(b).item<double>();
    const double expected = 0.25 + 3.0 + 4.0 - 2 * std::sqrt(tr_ab + 2 * std::sqrt(det));
    const at::Tensor z = at::zeros({2}, at::kDouble);
    EXPECT_NEAR(eval::frechet_distance(z, a, at::tensor({0.5, 0.0}, at::kDouble), b), expected, 1e-9);
    // Same Gaussian: 0; a singular covariance (rank 1) stays finite.
    EXPECT_NEAR(eval::frechet_distance(m1, s1, m1, s1), 0.0, 1e-9);
    const at::Tensor rank1 = at::tensor({1.0, 1.0, 1.0, 1.0}, at::kDouble).view({2, 2});
    EXPECT_NEAR(eval::frechet_distance(z, rank1, z, rank1), 0.0, 1e-6);
}

TEST(DistributionDistance, FadOfIdenticalSetsIsZeroAndOfSamplesApproachesTheTruth) {
    const at::Tensor mean1 = at::zeros({4}, at::kDouble), mean2 = at::tensor({1.0, 0.0, 0.0, 0.0}, at::kDouble);
    const at::Tensor cov = at::eye(4, at::kDouble);
    const at::Tensor x = gaussian_rows(300, mean1, cov, 1);
    EXPECT_NEAR(eval::fad(x, x), 0.0, 1e-9);
    // The true distance is 1 (means 1 apart, same covariance); a small generated set is biased upwards, and
    // FAD-inf, the intercept in 1/n, removes most of that bias.
    const at::Tensor ref = gaussian_rows(4000, mean2, cov, 2);
    const at::Tensor small = gaussian_rows(40, mean1, cov, 3);
    const double f = eval::fad(small, ref);
    EXPECT_GT(f, 1.0);
    const at::Tensor big = gaussian_rows(2000, mean1, cov, 4);
    const eval::FadInf inf = eval::fad_inf(big, ref, 8, 50, 0);
    EXPECT_EQ(inf.curve.size(), 8u);
    EXPECT_EQ(inf.curve.front().first, 50);
    EXPECT_EQ(inf.curve.back().first, 2000);
    EXPECT_GT(inf.slope, 0);  // smaller sets, larger FAD
    EXPECT_NEAR(inf.value, 1.0, 0.1);
    EXPECT_LT(std::abs(inf.value - 1.0), std::abs(inf.curve.front().second - 1.0));
}

TEST(DistributionDistance, KadIsTheUnbiasedMmdComputedByHand) {
    // Generated {0, 1}, reference {0, 2}, bandwidth 1: k(x, y) = exp(-(x - y)^2 / 2).
    const at::Tensor g = at::tensor({0.0, 1.0}, at::kDouble).view({2, 1}), r = at::tensor({0.0, 2.0}, at::kDouble).view({2, 1});
    const double gg = std::exp(-0.5), rr = std::exp(-2.0), gr = (1 + std::exp(-2.0) + std::exp(-0.5) + std::exp(-0.5)) / 4;
    EXPECT_NEAR(eval::kad(g, r, 1.0), 100 * (gg + rr - 2 * gr), 1e-12);
    // Paired (0 with 0, 1 with 2): the cross term keeps only (0, 2) and (1, 0).
    EXPECT_NEAR(eval::kad(g, r, 1.0, true), 100 * (gg + rr - (std::exp(-2.0) + std::exp(-0.5))), 1e-12);
    // The default bandwidth: the median pairwise distance of the reference set ({0, 2, 5}: 2, 5, 3 -> 3).
    const at::Tensor r3 = at::tensor({0.0, 2.0, 5.0}, at::kDouble).view({3, 1});
    EXPECT_NEAR(eval::median_pairwise_distance(r3), 3.0, 1e-12);
    EXPECT_NEAR(eval::kad(g, r3), eval::kad(g, r3, 3.0), 1e-12);
    // Unbiased: two large samples of one distribution give about 0 (either sign); another distribution does not.
    const at::Tensor cov = at::eye(3, at::kDouble);
    const at::Tensor a = gaussian_rows(400, at::zeros({3}, at::kDouble), cov, 5), b = gaussian_rows(400, at::zeros({3}, at::kDouble), cov, 6);
    const at::Tensor c = gaussian_rows(400, at::full({3}, 1.0, at::kDouble), cov, 7);
    EXPECT_LT(std::abs(eval::kad(a, b)), 0.5);
    EXPECT_GT(eval::kad(c, b), 10 * std::abs(eval::kad(a, b)));
}

TEST(DistributionDistance, BootstrapIntervalsHoldTheEstimateAndBadSetsAreRefused) {
    const at::Tensor cov = at::eye(2, at::kDouble);
    const at::Tensor g = gaussian_rows(60, at::zeros({2}, at::kDouble), cov, 8), r = gaussian_rows(60, at::ones({2}, at::kDouble), cov, 9);
    for (auto which : {eval::SetDistance::fad, eval::SetDistance::kad}) {
        const double point = which == eval::SetDistance::fad ? eval::fad(g, r) : eval::kad(g, r);
        const eval::Interval ci = eval::bootstrap_interval(which, g, r, true, 200, 0);
        EXPECT_LT(ci.low, point);
        EXPECT_GT(ci.high, point);
        const eval::Interval again = eval::bootstrap_interval(which, g, r, true, 200, 0);
        EXPECT_EQ(ci.low, again.low);  // deterministic given the seed
    }
    // Few items from one distribution (as in a 20-item generation table): resamples with repeats score far above the
    // estimate, and the interval must still hold it.
    const at::Tensor cov32 = at::eye(32, at::kDouble);
    const at::Tensor few_g = gaussian_rows(20, at::zeros({32}, at::kDouble), cov32, 10), few_r = gaussian_rows(20, at::zeros({32}, at::kDouble), cov32, 11);
    for (auto which : {eval::SetDistance::fad, eval::SetDistance::kad}) {
        const double point = which == eval::SetDistance::fad ? eval::fad(few_g, few_r) : eval::kad(few_g, few_r, 0, true);
        const eval::Interval ci = eval::bootstrap_interval(which, few_g, few_r, true, 200, 0);
        EXPECT_LE(ci.low, point);
        EXPECT_GT(ci.high, point);
        EXPECT_GE(ci.low, which == eval::SetDistance::fad ? 0.0 : -1e300);
    }
    EXPECT_THROW(eval::fad(g.slice(0, 0, 1), r), Error);
    EXPECT_THROW(eval::kad(g, at::zeros({5, 3}, at::kDouble)), Error);
    at::Tensor bad = g.clone();
    bad[0][0] = NAN;
    EXPECT_THROW(eval::fad(bad, r), Error);
    EXPECT_THROW(eval::bootstrap_interval(eval::SetDistance::fad, g, r.slice(0, 0, 30), true), Error);
}
