// Flags shared by the commands that run a model: -m, --mode, --hop, --whole.
#pragma once
#include <memory>
#include <string>

#include "cli/commands.hpp"
#include "cocola/error.hpp"
#include "cocola/model.hpp"
#include "cocola/score.hpp"

namespace cocola::cli {

struct ModelOptions {
    std::string model_path;
    std::string mode = "both";
    double hop = 5.0;
    bool whole = false;

    void add_to(CLI::App& app) {
        app.add_option("-m,--model", model_path,
                       "Model .safetensors (default: models/cocola_default.safetensors when one ships, or "
                       "$COCOLA_MODEL). Convert the official checkpoint with tools/convert_official_checkpoint.py");
        app.add_option("--mode", mode, "Channels a 2-channel (hpss) model sees: both, harmonic or percussive")
            ->check(CLI::IsMember({"both", "harmonic", "percussive"}))
            ->capture_default_str();
        // Checked by eval::check_score_options (CLI11's range check prints a 309-digit upper bound).
        app.add_option("--hop", hop, "Hop between aligned 5 s windows, in seconds")->capture_default_str();
        app.add_flag("--whole", whole, "Embed each file in one pass instead of 5 s windows");
    }
    model::Model load_model() const {
        std::string p = model_path.empty() ? default_model_path() : model_path;
        if (p.empty())
            throw Error("no model given and no default model found (models/cocola_default.safetensors next to the "
                        "build or the sources, or $COCOLA_MODEL): pass -m MODEL.safetensors");
        return model::Model::load(p);
    }
    eval::ScoreOptions score_options() const {
        eval::ScoreOptions o;
        o.mode = model::parse_mode(mode);
        o.hop_seconds = hop;
        o.whole = whole;
        return o;
    }
};

}  // namespace cocola::cli
