// cocola generate: CompoNet's accompaniment generation, extraction, adding and removing from a prompt; with an
// MSDM model (--model msdm), the baseline's accompaniment by inpainting the given sources.
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "cli/commands.hpp"
#include "cli/progress.hpp"
#include "cocola/audio.hpp"
#include "cocola/componet.hpp"
#include "cocola/csv.hpp"
#include "cocola/error.hpp"
#include "cocola/features.hpp"
#include "cocola/model.hpp"
#include "cocola/generate.hpp"

namespace cocola::cli {
namespace {

struct Job {
    std::string input, output, prompt;
};

// The prompt a --task asks for, as text ("in: ...; out: ...").
std::string task_prompt(const std::string& task, const std::vector<std::string>& in_tags, const std::vector<std::string>& out_tags) {
    using componet::canonical_tag;
    if (out_tags.empty()) throw Error("--task " + task + " needs --out-tags");
    const bool described = !(in_tags.empty() || (in_tags.size() == 1 && canonical_tag(in_tags[0]) == "mix"));
    std::vector<std::string> in = described ? in_tags : std::vector<std::string>{"mix"}, out;
    if (task == "accompany" || task == "extract") out = out_tags;
    else if (task == "add") {
        if (!described) throw Error("--task add needs --in-tags (the stems of the input, to which --out-tags are added)");
        out = in;
        out.insert(out.end(), out_tags.begin(), out_tags.end());
    } else if (task == "remove") {
        if (!described) throw Error("--task remove needs --in-tags (the stems of the input, from which --out-tags are removed)");
        for (const auto& t : in) {
            bool removed = false;
            for (const auto& r : out_tags) removed |= canonical_tag(r) == canonical_tag(t);
            if (!removed) out.push_back(t);
        }
        if (out.empty()) throw Error("--task remove: nothing would be left of --in-tags");
    } else {
        throw Error("unknown --task " + task);
    }
    auto join = [](const std::vector<std::string>& v) {
        std::string s;
        for (const auto& t : v) s += (s.empty() ? "" : ", ") + t;
        return s;
    };
    return "in: " + join(in) + "; out: " + join(out);
}

}  // namespace

std::unique_ptr<model::Model> load_guide_model(std::string& path) {
    if (path.empty()) path = default_generator_path("cocola_mel_guide", "--guide-model");
    auto guide = std::make_unique<model::Model>(model::Model::load(path));
    if (guide->config().frontend != features::Frontend::Mel)
        throw Error(path + ": the guide must read the mel front-end (it is given the decoder's spectrogram)");
    return guide;
}

Runner add_generate_command(CLI::App& app) {
    struct Opts {
        std::string in, out, prompt, task, pairs, model, vae, vocoder = "neural", vocoder_model, cocola_model, guide_model;
        std::vector<std::string> in_tags, out_tags, sources;
        componet::GenerateOptions g;
        bool json = false;
    };
    auto o = std::make_shared<Opts>();
    app.add_option("IN", o->in, "Input audio (any length; 16 kHz mono after loading)");
    app.add_option("-o,--out", o->out, "Output WAV (16 kHz mono, the input's length)");
    app.add_option("--prompt", o->prompt, "Stem tags, e.g. \"in: piano; out: bass, drums\"");
    app.add_option("--task", o->task, "Instead of --prompt: accompany, extract, add or remove, with --out-tags (and --in-tags)")
        ->check(CLI::IsMember({"accompany", "extract", "add", "remove"}));
    app.add_option("--in-tags", o->in_tags, "Stems of the input (default: mix, an undescribed input)")->delimiter(',');
    app.add_option("--out-tags", o->out_tags, "Stems to make (accompany), take out (extract), add or remove")->delimiter(',');
    app.add_option("--pairs", o->pairs, "CSV of input,output[,prompt] lines (paths relative to the CSV, as score --pairs; a "
                                        "prompt in double quotes); the prompt defaults to --prompt / --task");
    app.add_option("--steps", o->g.sampling.steps, "DDIM steps")->capture_default_str()->check(CLI::Range(1, 1000));
    app.add_option("--eta", o->g.sampling.eta, "DDIM eta (0: deterministic)")->capture_default_str()->check(CLI::Range(0.0, 1.0));
    app.add_option("--guidance", o->g.sampling.guidance, "Classifier-free guidance scale (1: none)")->capture_default_str()
        ->check(CLI::Range(0.0, 100.0));
    app.add_option("--seed", o->g.sampling.seed, "Seed of the initial noise")->capture_default_str();
    app.add_option("--candidates", o->g.candidates, "Candidates per chunk; the kept one is chosen by --select")
        ->capture_default_str()->check(CLI::Range(1, 64));
    app.add_option("--select", o->g.select, "cocola: the highest COCOLA score against the input (--cocola-model); guide: "
                                            "the highest score of --guide-model; norm: the highest L2 norm (as the paper "
                                            "did for MSDM)")
        ->check(CLI::IsMember({"cocola", "guide", "norm"}))->capture_default_str();
    app.add_option("--overlap", o->g.overlap_seconds, "Seconds by which 5.12 s chunks overlap (crossfaded)")
        ->capture_default_str()->check(CLI::Range(0.0, 2.56));
    app.add_option("--model", o->model, "CompoNet or MSDM weights (default: models/componet_default.safetensors; "
                                        "\"msdm\": models/msdm_default.safetensors)");
    app.add_option("--source", o->sources, "MSDM: a given source as TAG=FILE (repeat for several; IN alone stands for the "
                                           "prompt's single input tag)");
    app.add_option("--vae", o->vae, "VAE (default: models/vae_default.safetensors)");
    app.add_option("--vocoder", o->vocoder, "Latents' spectrogram to audio: neural or griffin-lim")
        ->check(CLI::IsMember({"neural", "griffin-lim"}))->capture_default_str();
    app.add_option("--vocoder-model", o->vocoder_model, "Neural vocoder (default: models/vocoder_default.safetensors)");
    app.add_option("--cocola-model", o->cocola_model, "COCOLA model that scores the result (default: the shipped one)");
    app.add_option("--cocola-guidance", o->g.cocola_guidance, "COCOLA-guided sampling: how far each DDIM step follows the "
                                                              "gradient of the guide's score against the input (0: off; try 0.1-1)")
        ->capture_default_str()->check(CLI::Range(0.0, 100.0));
    app.add_option("--guide-model", o->guide_model, "The guide: a COCOLA model of the mel front-end (judge with another one, "
                                                 "default: models/cocola_mel_guide.safetensors)");
    app.add_option("--guide-views", o->g.guide_views, "With --cocola-guidance: the guide's score averaged over this many views of "
                                                     "the decoded spectrogram (shifted crops, gain changes), so that the "
                                                     "gradient follows what they share (1: the spectrogram alone)")
        ->capture_default_str()->check(CLI::Range(1, 64));
    o->g.level = "auto";
    app.add_option("--level", o->g.level, "input: the output as loud as the input (RMS over the piece, never clipping); keep: "
                                          "the generator's own level, lowered only where its peak would pass 0.99; auto: keep for "
                                          "extraction and removal (a part of the input), input otherwise")
        ->check(CLI::IsMember({"auto", "input", "keep"}))->capture_default_str();
    app.add_flag("--json", o->json, "Print a JSON summary (prompt, seed, steps, COCOLA score against the input)");
    app.footer("Examples:\n"
               "  cocola generate song_piano.wav --prompt \"in: piano; out: bass, drums\" -o bass_drums.wav\n"
               "  cocola generate mix.wav --task extract --out-tags bass -o bass.wav\n"
               "  cocola generate --pairs jobs.csv --task accompany --out-tags drums --json\n"
               "  cocola generate --model msdm --source bass=bass.wav --source drums=drums.wav --prompt \"out: piano\" -o piano.wav\n"
               "MSDM reads each given source on its own (it inpaints them), keeps the loudest of --candidates (default 12,\n"
               "--select norm, as the paper did) and knows only its fixed sources.");
    return [o, &app]() {
        std::vector<Job> jobs;
        std::string default_prompt = o->prompt;
        if (!o->task.empty()) {
            if (!o->prompt.empty()) throw Error("give --prompt or --task, not both");
            default_prompt = task_prompt(o->task, o->in_tags, o->out_tags);
        }
        const bool msdm_keyword = o->model == "msdm";
        const std::string model_path = o->model.empty() ? default_generator_path("componet_default", "--model")
                                       : msdm_keyword   ? default_generator_path("msdm_default", "--model")
                                                        : o->model;
        if (!o->sources.empty() && !o->in.empty()) throw Error("give IN or --source TAG=FILE, not both");
        if (!o->sources.empty() && !o->pairs.empty()) throw Error("--source and --pairs do not go together");
        if (!o->sources.empty()) {
            if (o->out.empty()) throw Error("give -o OUT");
            if (default_prompt.empty()) throw Error("give --prompt \"out: ...\" (or --task accompany --out-tags ...)");
            jobs.push_back({"", o->out, default_prompt});
        } else if (!o->pairs.empty()) {
            if (!o->in.empty()) throw Error("give IN or --pairs, not both");
            std::ifstream f(o->pairs);
            if (!f) throw Error(o->pairs + ": cannot open");
            std::stringstream text;
            text << f.rdbuf();
            // RFC 4180 (quoted fields may hold commas, quotes, line breaks), as `score --pairs` reads it.
            const csv::Parsed parsed = csv::parse(text.str());
            if (!parsed.error.empty()) throw Error(o->pairs + ": " + parsed.error);
            const std::filesystem::path base = std::filesystem::path(o->pairs).parent_path();
            auto resolve = [&](const std::string& p) {
                return std::filesystem::path(p).is_absolute() ? p : (base / p).string();
            };
            bool first = true;
            for (const auto& rec : parsed.records) {
                std::vector<std::string> fields;
                for (const auto& field : rec.fields) fields.push_back(csv::trim(field));
                const bool header = first && !fields.empty() && fields[0] == "input";
                first = false;
                if (header || fields.empty() || (fields.size() == 1 && fields[0].empty()) || fields[0].rfind('#', 0) == 0)
                    continue;
                const std::string where = o->pairs + ":" + std::to_string(rec.line);
                if (fields.size() < 2 || fields.size() > 3) throw Error(where + ": expected input,output[,prompt]");
                Job j{resolve(fields[0]), resolve(fields[1]),
                      fields.size() == 3 && !fields[2].empty() ? fields[2] : default_prompt};
                if (j.prompt.empty()) throw Error(where + ": no prompt (and no --prompt / --task)");
                jobs.push_back(j);
            }
            if (jobs.empty()) throw Error(o->pairs + ": no lines");
        } else {
            if (o->in.empty() || o->out.empty()) throw Error("give IN and -o OUT (or --pairs CSV)");
            if (default_prompt.empty()) throw Error("give --prompt \"in: ...; out: ...\" or --task with --out-tags");
            jobs.push_back({o->in, o->out, default_prompt});
        }

        std::unique_ptr<model::Model> guide;
        if (o->g.cocola_guidance > 0 || o->g.select == "guide") {
            guide = load_guide_model(o->guide_model);
            o->g.guide = guide.get();
        }
        auto model = componet::Componet::load(model_path);
        const bool msdm = model.config().is_msdm();
        if (!o->sources.empty() && !msdm) throw Error("--source is for MSDM models; " + model_path + " is a CompoNet (give IN)");
        if (msdm) {
            if (!app.count("--candidates")) o->g.candidates = 12;
            if (!app.count("--select")) o->g.select = "norm";
        }
        const auto vae = generate::Vae::load(o->vae.empty() ? default_generator_path("vae_default", "--vae") : o->vae);
        std::unique_ptr<generate::Vocoder> vocoder;
        if (o->vocoder == "neural")
            vocoder = std::make_unique<generate::Vocoder>(
                generate::Vocoder::load(o->vocoder_model.empty() ? default_generator_path("vocoder_default", "--vocoder-model") : o->vocoder_model));
        std::unique_ptr<model::Model> judge;
        const std::string judge_path = o->cocola_model.empty() ? default_model_path() : o->cocola_model;
        if (!judge_path.empty()) judge = std::make_unique<model::Model>(model::Model::load(judge_path));
        else if (o->g.select == "cocola" && o->g.candidates > 1)
            throw Error("--select cocola needs a COCOLA model (--cocola-model) and none ships here; use --select norm");

        // Parse every prompt before the slow part.
        std::vector<componet::Prompt> prompts;
        for (const auto& j : jobs)
            prompts.push_back(componet::parse_prompt(j.prompt, msdm ? model.config().sources : model.config().vocabulary));
        // MSDM: the given sources of each job (tag, file).
        std::vector<std::vector<std::pair<std::string, std::string>>> given(jobs.size());
        if (msdm)
            for (size_t i = 0; i < jobs.size(); ++i) {
                if (!o->sources.empty()) {
                    for (const auto& spec : o->sources) {
                        const auto eq = spec.find('=');
                        if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size())
                            throw Error("--source " + spec + ": expected TAG=FILE");
                        given[i].push_back({componet::canonical_tag(spec.substr(0, eq)), spec.substr(eq + 1)});
                    }
                    if (!prompts[i].in.empty()) {
                        std::set<std::string> a, b;
                        for (const auto& t : prompts[i].in) a.insert(t.name);
                        for (const auto& g : given[i]) b.insert(g.first);
                        if (a != b) throw Error("the prompt's \"in:\" tags differ from the --source tags");
                    }
                } else {
                    if (prompts[i].in.size() != 1)
                        throw Error("MSDM reads each given source on its own: with \"" + componet::format_prompt(prompts[i]) +
                                    "\" give every input as --source TAG=FILE (IN stands for a single input tag)");
                    given[i].push_back({prompts[i].in[0].name, jobs[i].input});
                }
            }

        nlohmann::json summary = nlohmann::json::array();
        for (size_t i = 0; i < jobs.size(); ++i) {
            std::vector<float> x;
            std::vector<std::pair<std::string, std::vector<float>>> given_audio;
            if (msdm) {
                for (const auto& [tag, file] : given[i]) {
                    given_audio.push_back({tag, audio::load_mono(file)});
                    if (given_audio.back().second.empty()) throw Error(file + ": no audio");
                    if (given_audio.back().second.size() != given_audio.front().second.size())
                        throw Error(file + ": not as long as " + given[i].front().second + " (the given sources must line up)");
                }
                x.assign(given_audio.front().second.size(), 0.f);
                for (const auto& g : given_audio)
                    for (size_t k = 0; k < x.size(); ++k) x[k] += g.second[k];
            } else {
                x = audio::load_mono(jobs[i].input);
                if (x.empty()) throw Error(jobs[i].input + ": no audio");
            }
            Progress bar("generate " + std::to_string(i + 1) + "/" + std::to_string(jobs.size()) + " (chunks)", 1);
            const auto on_chunk = [&](size_t done, size_t total) {
                bar.set_total(total);
                bar.update(done);
            };
            // --level auto: the prompt tells extraction from accompaniment unless the input is an undescribed mix
            // ("in: mix; out: drums" is both), where --task does. (MSDM's wanted sources are never given ones, so
            // its prompts resolve to "input".)
            componet::GenerateOptions go = o->g;
            go.level = o->task == "extract" && go.level == "auto" ? "keep" : componet::resolve_level(go.level, prompts[i]);
            componet::Generated g;
            if (msdm) {
                std::vector<std::string> wanted;
                for (const auto& t : prompts[i].out) wanted.push_back(t.name);
                g = componet::generate_msdm_audio(model, vae, vocoder.get(), judge.get(), given_audio, wanted, go, on_chunk);
            } else {
                g = componet::generate_audio(model, vae, vocoder.get(), judge.get(), x, prompts[i], go, on_chunk);
            }
            bar.finish();
            if (jobs[i].input.empty()) {
                for (const auto& [tag, file] : given[i]) jobs[i].input += (jobs[i].input.empty() ? "" : ",") + tag + "=" + file;
            }
            audio::write_wav(jobs[i].output, g.audio);
            double score = 0;
            for (double s : g.chunk_scores) score += s / static_cast<double>(g.chunk_scores.size());
            nlohmann::json r = {{"input", jobs[i].input},        {"output", jobs[i].output},
                                {"prompt", componet::format_prompt(prompts[i])},
                                {"seed", o->g.sampling.seed},    {"steps", o->g.sampling.steps},
                                {"guidance", o->g.sampling.guidance}, {"candidates", o->g.candidates},
                                {"select", o->g.select},         {"vocoder", o->vocoder},
                                {"model", msdm ? "msdm" : "componet"}, {"cocola_guidance", o->g.cocola_guidance},
                                {"guide_views", o->g.guide_views}, {"level", go.level},
                                {"level_gain_db", g.level_gain_db},
                                {"seconds", static_cast<double>(x.size()) / 16000.0}};
            // With --select guide the scores are the guide's (the model that picked), not the judge's.
            const bool by_guide = o->g.select == "guide";
            if (!g.chunk_scores.empty()) {
                r[by_guide ? "guide_score" : "cocola_score"] = score;
                r["chunk_scores"] = g.chunk_scores;
            }
            summary.push_back(r);
            if (!o->json)
                std::cout << jobs[i].output << "  (" << componet::format_prompt(prompts[i]) << ")"
                          << (g.chunk_scores.empty() ? "" : (by_guide ? "  guide's score " : "  COCOLA score ") + std::to_string(score))
                          << "\n";
        }
        if (o->json) std::cout << (jobs.size() == 1 && o->pairs.empty() ? summary[0] : summary).dump(2) << "\n";
        return 0;
    };
}

}  // namespace cocola::cli
