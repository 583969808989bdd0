// The contrastive run's options as data: one list maps each TrainOptions field to its options.json key, its
// CLI flags and whether --resume may change it; options.json, its reading and the CLI's resume rules derive
// from it (train_core.hpp, "options as data").
#include <algorithm>

#include "cocola/train.hpp"
#include "cocola/train_core.hpp"

namespace cocola::train {

template <>
struct OptionCodec<features::Frontend> {
    static nlohmann::json write(features::Frontend f) { return features::frontend_name(f); }
    static features::Frontend read(const nlohmann::json& j) { return features::parse_frontend(j.get<std::string>()); }
};
template <>
struct OptionCodec<model::Similarity> {
    static nlohmann::json write(model::Similarity s) { return model::similarity_name(s); }
    static model::Similarity read(const nlohmann::json& j) { return model::parse_similarity(j.get<std::string>()); }
};
template <>
struct OptionCodec<data::PairMode> {
    static nlohmann::json write(data::PairMode m) { return data::pair_mode_name(m); }
    static data::PairMode read(const nlohmann::json& j) { return data::parse_pair_mode(j.get<std::string>()); }
};
template <>
struct OptionCodec<LossKind> {
    static nlohmann::json write(LossKind k) { return k == LossKind::Paper ? "paper" : "symmetric"; }
    static LossKind read(const nlohmann::json& j) { return j.get<std::string>() == "symmetric" ? LossKind::Symmetric : LossKind::Paper; }
};

namespace {

// Every option of a contrastive run, in options.json order. Resumable: what a resume may change (the length of
// the run, the rates for the rest of it, and where features are computed, which changes no number).
struct VisitTrainOptions {
    template <class V>
    void operator()(TrainOptions& o, V&& v) const {
        v(Option{"caches", {"--data"}}, o.caches);
        v(Option{"frontend", {"--frontend"}}, o.frontend);
        v(Option{"similarity", {"--similarity"}}, o.similarity);
        v(Option{"pair_mode", {"--single-stem", "--shared-stem"}}, o.pair_mode);
        v(Option{"batch", {"--batch"}}, o.batch);
        v(Option{"lr", {"--lr"}, true}, o.lr);
        v(Option{"steps", {"--steps"}, true}, o.steps);
        v(Option{"noise_sigma", {"--noise"}}, o.noise_sigma);
        v(Option{"max_overlap", {"--max-overlap"}}, o.max_overlap);
        v(Option{"dropout", {"--dropout"}}, o.dropout);
        v(Option{"seed", {"--seed"}}, o.seed);
        v(Option{"val_every", {"--val-every"}}, o.val_every);
        v(Option{"val_batches", {"--val-batches"}}, o.val_batches);
        v(Option{"checkpoint_every", {"--checkpoint-every"}}, o.checkpoint_every);
        v(Option{"device", {"--device"}}, o.device);
        v(Option{"init_from", {"--init"}}, o.init_from);
        v(Option{"loss", {"--loss"}}, o.loss);
        v(Option{"similarity_lr", {"--similarity-lr"}, true}, o.similarity_lr);
        v(Option{"similarity_init_std", {"--similarity-init-std"}}, o.similarity_init_std);
        v(Option{"channel_masks", {"--no-channel-masks"}}, o.channel_masks);
        v(Option{"swap_roles", {"--swap-roles"}}, o.swap_roles);
        v(Option{"windows_per_track", {"--windows-per-track"}}, o.windows_per_track);
        v(Option{"similarity_init_identity", {"--similarity-init-identity"}}, o.similarity_init_identity);
        v(Option{"center_projection", {"--center-projection"}}, o.center_projection);
        v(Option{"warmup_steps", {"--warmup"}}, o.warmup_steps);
        v(Option{"lr_decay", {"--lr-decay"}}, o.lr_decay);
        v(Option{"zero_init_residual", {"--zero-init-residual"}}, o.zero_init_residual);
        v(Option{"aux_tempo", {"--aux-tempo"}}, o.aux_tempo);
        v(Option{"aux_labels", {"--aux-labels"}}, o.aux_labels);
        v(Option{"feature_path", {"--feature-path"}, true}, o.feature_path);
        v(Option{"data_weights", {"--data-weights"}}, o.data_weights);
        v(Option{"stem_effects", {"--stem-effects"}}, o.stem_effects);
        v(Option{"stem_gain_db", {"--stem-gain-db"}}, o.stem_gain_db);
    }
};

// Keys every options.json has had since the first runs; later ones default when missing.
const std::vector<std::string> kRequiredKeys = {"caches", "frontend", "similarity", "pair_mode", "batch", "lr", "steps",
                                                "noise_sigma", "max_overlap", "dropout", "seed", "val_every",
                                                "val_batches", "checkpoint_every"};

}  // namespace

nlohmann::json options_json(const TrainOptions& o) { return options_to_json(o, VisitTrainOptions{}); }

TrainOptions train_options_from_json(const nlohmann::json& j) {
    return options_from_json<TrainOptions>(j, VisitTrainOptions{}, kRequiredKeys);
}

TrainOptions read_run_options(const std::string& run_dir) {
    const RunFolder run(run_dir);
    const auto j = run.read_options();
    try {
        TrainOptions o = train_options_from_json(j);
        o.run_dir = run_dir;
        return o;
    } catch (const std::exception& e) {
        throw Error(run.path("options.json") + ": malformed (" + e.what() + ")");
    }
}

std::vector<std::string> fixed_on_resume_flags() {
    auto flags = option_flags<TrainOptions>(VisitTrainOptions{}, false);
    flags.insert(flags.begin() + 1, "--out");  // the run folder is the run
    return flags;
}

void apply_resumable_options(const TrainOptions& given, TrainOptions& run,
                             const std::function<bool(const std::string&)>& was_given) {
    apply_resumable(given, run, VisitTrainOptions{}, was_given);
}

double learning_rate_scale(const TrainOptions& o, int64_t step) {
    return rate_scale(RateSchedule{o.warmup_steps, o.lr_decay, o.steps}, step);
}

}  // namespace cocola::train
