// cocola eval-generation: the generation table of docs/generation.md. For each test set and task, N test chunks
// (an input sub-mix and the target the task asks for); each generator's output is scored by COCOLA against the
// input and measured against the target. Items are appended to DIR/items.jsonl as they finish, so an
// interrupted evaluation continues with --resume; the tables are written at the end.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "cli/commands.hpp"
#include "cli/progress.hpp"
#include "cocola/audio.hpp"
#include "cocola/componet.hpp"
#include "cocola/data.hpp"
#include "cocola/error.hpp"
#include "cocola/fsutil.hpp"
#include "cocola/generate.hpp"
#include "cocola/generation_eval.hpp"
#include "cocola/rng.hpp"

namespace cocola::cli {
namespace {

std::string set_name(const std::string& d) {
    namespace fs = std::filesystem;
    const fs::path p(d);
    return p.filename().empty() ? p.parent_path().filename().string() : p.filename().string();
}

std::string format_mean(double mean, double ci, int digits) {
    if (!std::isfinite(mean)) return "-";
    char b[64];
    if (std::isfinite(ci)) std::snprintf(b, sizeof(b), "%.*f ± %.*f", digits, mean, digits, ci);
    else std::snprintf(b, sizeof(b), "%.*f", digits, mean);
    return b;
}

nlohmann::json number(double x) { return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr); }
double from_json(const nlohmann::json& j) { return j.is_number() ? j.get<double>() : NAN; }

}  // namespace

Runner add_eval_generation_command(CLI::App& app) {
    struct Opts {
        std::vector<std::string> data, tasks = {"accompany", "extract"}, generators = {"componet", "truth", "resynth", "random"};
        std::string split = "test", out = "generation-eval", model, vae, vocoder = "neural", vocoder_model, cocola_model,
                    cache_dir = data::default_cache_dir();
        size_t n = 40;
        int examples = 2;
        uint64_t seed = 0;
        componet::GenerateOptions g;
        bool resume = false;
    };
    auto o = std::make_shared<Opts>();
    o->g.sampling.steps = 50;
    app.add_option("--data", o->data, "Dataset roots or caches (their --split is used)")->required()->delimiter(',');
    app.add_option("--split", o->split, "Split of each dataset")->capture_default_str();
    app.add_option("--n", o->n, "Test chunks per set and task")->capture_default_str()->check(CLI::Range(1, 100000));
    app.add_option("--tasks", o->tasks, "accompany (input: some stems; target: the others), extract (input: all "
                                        "stems; target: one)")
        ->delimiter(',')->check(CLI::IsMember(componet::generation_tasks()))->capture_default_str();
    app.add_option("--generators", o->generators, "componet (the model), truth (the target), resynth (the target "
                                                  "through the VAE and vocoder), random (a sub-mix of another song)")
        ->delimiter(',')->check(CLI::IsMember(componet::generation_generators()))->capture_default_str();
    app.add_option("--seed", o->seed, "Seed of the items and of generation")->capture_default_str();
    app.add_option("--steps", o->g.sampling.steps, "DDIM steps")->capture_default_str()->check(CLI::Range(1, 1000));
    app.add_option("--guidance", o->g.sampling.guidance, "Classifier-free guidance scale")->capture_default_str()
        ->check(CLI::Range(0.0, 100.0));
    app.add_option("--candidates", o->g.candidates, "Candidates per item, the kept one chosen by --select")
        ->capture_default_str()->check(CLI::Range(1, 64));
    app.add_option("--select", o->g.select, "cocola (highest COCOLA score against the input) or norm (highest L2 norm)")
        ->check(CLI::IsMember({"cocola", "norm"}))->capture_default_str();
    app.add_option("--model", o->model, "CompoNet weights (default: models/componet_default.safetensors)");
    app.add_option("--vae", o->vae, "VAE (default: models/vae_default.safetensors)");
    app.add_option("--vocoder", o->vocoder, "neural or griffin-lim")->check(CLI::IsMember({"neural", "griffin-lim"}))
        ->capture_default_str();
    app.add_option("--vocoder-model", o->vocoder_model, "Neural vocoder (default: models/vocoder_default.safetensors)");
    app.add_option("-m,--cocola-model", o->cocola_model, "COCOLA model that scores (default: the shipped one)");
    app.add_option("--examples", o->examples, "Items per set and task whose audio is written to DIR/audio")
        ->capture_default_str()->check(CLI::Range(0, 1000));
    app.add_option("-o,--out", o->out, "Output folder: table.md, table.json, items.csv, items.jsonl, audio/")
        ->capture_default_str();
    app.add_flag("--resume", o->resume, "Continue the evaluation in --out (its items.jsonl) with the same options");
    app.add_option("--cache-dir", o->cache_dir, "Where dataset roots are indexed")->capture_default_str();
    app.footer("Example:\n  cocola eval-generation --data data/demo,data/openmsx --n 40 --steps 50 -o out/generation");
    return [o]() {
        namespace fs = std::filesystem;
        const std::set<std::string> gens(o->generators.begin(), o->generators.end());
        // What defines the items and the outputs: a resumed evaluation must have the same.
        const nlohmann::json settings = {
            {"data", o->data}, {"split", o->split}, {"n", o->n}, {"tasks", o->tasks}, {"seed", o->seed},
            {"steps", o->g.sampling.steps}, {"guidance", o->g.sampling.guidance}, {"candidates", o->g.candidates},
            {"select", o->g.select}, {"model", o->model}, {"vae", o->vae}, {"vocoder", o->vocoder},
            {"vocoder_model", o->vocoder_model}, {"cocola_model", o->cocola_model}};
        const std::string log_path = o->out + "/items.jsonl", settings_path = o->out + "/settings.json";
        std::vector<componet::MeasuredItem> measured;
        std::set<std::tuple<std::string, std::string, size_t, std::string>> done;
        if (fs::exists(log_path)) {
            if (!o->resume)
                throw Error(o->out + " holds an evaluation (items.jsonl): give --resume to continue it, or another -o");
            std::ifstream sf(settings_path);
            nlohmann::json before;
            try {
                sf >> before;
            } catch (const std::exception&) {
                throw Error(settings_path + ": missing or unreadable; cannot check that --resume continues the same evaluation");
            }
            if (before != settings)
                throw Error(settings_path + ": the evaluation there was made with other options (" + before.dump() +
                            "); give the same ones, or another -o");
            std::ifstream f(log_path);
            std::string line;
            size_t no = 0;
            while (std::getline(f, line)) {
                ++no;
                if (line.empty()) continue;
                try {
                    const auto j = nlohmann::json::parse(line);
                    componet::MeasuredItem it;
                    it.set = j.at("set"), it.task = j.at("task"), it.generator = j.at("generator");
                    it.index = j.at("index");
                    it.m.cocola = from_json(j.at("cocola_score"));
                    it.m.log_mel_l1 = from_json(j.at("log_mel_l1_db"));
                    it.m.si_sdr = from_json(j.at("si_sdr_db"));
                    if (done.insert({it.set, it.task, it.index, it.generator}).second) measured.push_back(it);
                } catch (const std::exception&) {
                    // A line cut by an interruption: the item is made again.
                    std::cerr << "warning: " << log_path << ":" << no << ": unreadable line skipped\n";
                }
            }
        } else if (o->resume) {
            throw Error(o->out + ": no evaluation to resume (no items.jsonl)");
        }

        // Everything that can fail loads before the slow part.
        std::unique_ptr<componet::Componet> model;
        std::vector<std::string> vocabulary;
        if (gens.count("componet")) {
            model = std::make_unique<componet::Componet>(
                componet::Componet::load(o->model.empty() ? default_generator_path("componet_default", "--model") : o->model));
            if (!model->config().controlnet)
                throw Error("this CompoNet has no ControlNet adapter (a stage-1 model): it cannot read an input");
            vocabulary = model->config().vocabulary;
        } else {
            vocabulary = componet::builtin_tags();
        }
        std::unique_ptr<generate::Vae> vae;
        std::unique_ptr<generate::Vocoder> vocoder;
        if (gens.count("componet") || gens.count("resynth")) {
            vae = std::make_unique<generate::Vae>(generate::Vae::load(o->vae.empty() ? default_generator_path("vae_default", "--vae") : o->vae));
            if (o->vocoder == "neural")
                vocoder = std::make_unique<generate::Vocoder>(generate::Vocoder::load(
                    o->vocoder_model.empty() ? default_generator_path("vocoder_default", "--vocoder-model") : o->vocoder_model));
        }
        const std::string judge_path = o->cocola_model.empty() ? default_model_path() : o->cocola_model;
        if (judge_path.empty()) throw Error("no COCOLA model ships here: give -m / --cocola-model");
        const model::Model judge = model::Model::load(judge_path);

        struct Set {
            std::string name;
            std::vector<componet::GenerationItem> items;
        };
        std::vector<Set> sets;
        size_t total = 0;
        for (const auto& d : o->data) {
            const std::string dir = data::ensure_cache(d, o->cache_dir);
            const data::StemCache cache(dir);
            for (const auto& task : o->tasks) {
                Set s{set_name(d), componet::draw_generation_items(cache, set_name(d), o->split, task, o->n, o->seed, vocabulary)};
                if (s.items.size() < o->n)
                    std::cerr << "warning: " << d << ": only " << s.items.size() << " " << task << " items found\n";
                total += s.items.size() * o->generators.size();
                sets.push_back(std::move(s));
            }
        }
        fs::create_directories(o->out + "/audio");
        fsutil::write_file_atomically(settings_path, settings.dump(2) + "\n");
        std::ofstream log(log_path, std::ios::app);
        if (!log) throw Error(log_path + ": cannot write");

        Progress bar("eval-generation", total);
        bar.resume_from(done.size());
        for (const auto& s : sets) {
            for (const auto& item : s.items) {
                const bool listen = item.index < static_cast<size_t>(o->examples);
                const std::string stem = o->out + "/audio/" + s.name + "_" + item.task + "_" + std::to_string(item.index);
                if (listen) {
                    audio::write_wav(stem + "_input.wav", item.input);
                    audio::write_wav(stem + "_target.wav", item.target);
                }
                for (const auto& gname : o->generators) {
                    if (done.count({item.set, item.task, item.index, gname})) continue;
                    std::vector<float> output;
                    if (gname == "truth") output = item.target;
                    else if (gname == "random") output = item.random;
                    else if (gname == "resynth") output = generate::resynthesize(item.target, vae.get(), {}, vocoder.get());
                    else {
                        componet::GenerateOptions go = o->g;
                        go.sampling.seed = mix_seed(o->seed, item.index * 2 + (item.task == "extract"));
                        // The judge only picks among candidates here; the output is scored below, once.
                        const model::Model* picker = go.select == "cocola" && go.candidates > 1 ? &judge : nullptr;
                        output = componet::generate_audio(*model, *vae, vocoder.get(), picker, item.input, item.prompt, go).audio;
                    }
                    output.resize(static_cast<size_t>(generate::kChunkSamples), 0.f);
                    componet::MeasuredItem it{item.set, item.task, gname, item.index, componet::measure_output(&judge, item, output)};
                    if (listen && gname != "truth") audio::write_wav(stem + "_" + gname + ".wav", output);
                    const nlohmann::json j = {{"set", it.set}, {"task", it.task}, {"index", it.index}, {"generator", gname},
                                              {"track", item.track}, {"offset_seconds", item.offset / 16000.0},
                                              {"prompt", componet::format_prompt(item.prompt)},
                                              {"random_track", gname == "random" ? item.random_track : ""},
                                              {"cocola_score", number(it.m.cocola)}, {"log_mel_l1_db", number(it.m.log_mel_l1)},
                                              {"si_sdr_db", number(it.m.si_sdr)}};
                    log << j.dump() << "\n" << std::flush;
                    measured.push_back(it);
                    bar.tick();
                }
            }
        }
        bar.finish();

        const auto rows = componet::summarize_generation(measured);
        std::map<std::pair<std::string, std::string>, double> truth, random;
        for (const auto& r : rows) {
            if (r.generator == "truth") truth[{r.set, r.task}] = r.cocola;
            if (r.generator == "random") random[{r.set, r.task}] = r.cocola;
        }
        std::string md = "| test set | task | generator | items | COCOLA score | of the truth's | random -> truth | log-mel L1 to the target (dB) | SI-SDR to the target (dB) |\n"
                         "|---|---|---|---|---|---|---|---|---|\n";
        nlohmann::json table = nlohmann::json::array();
        for (const auto& r : rows) {
            const auto t = truth.find({r.set, r.task});
            const double ratio = t != truth.end() && std::isfinite(r.cocola) && t->second != 0 ? r.cocola / t->second : NAN;
            char pct[32] = "-";
            if (std::isfinite(ratio)) std::snprintf(pct, sizeof(pct), "%.0f%%", 100 * ratio);
            // Where the score lies between a random real sub-mix (0%) and the real target (100%): the scale on which
            // coherence is judged, since a random sub-mix already scores most of the truth's raw score.
            const auto rnd = random.find({r.set, r.task});
            const double way = t != truth.end() && rnd != random.end() && std::isfinite(r.cocola) && t->second != rnd->second
                                   ? (r.cocola - rnd->second) / (t->second - rnd->second) : NAN;
            char way_pct[32] = "-";
            if (std::isfinite(way)) std::snprintf(way_pct, sizeof(way_pct), "%.0f%%", 100 * way);
            const bool own = r.generator == "truth";  // its distances to itself are 0 and +inf
            md += "| " + r.set + " | " + r.task + " | " + r.generator + " | " + std::to_string(r.items) + " | " +
                  format_mean(r.cocola, r.cocola_ci95, 2) + " | " + pct + " | " + way_pct + " | " +
                  (own ? "0" : format_mean(r.log_mel_l1, r.log_mel_l1_ci95, 2)) + " | " +
                  (own ? "-" : format_mean(r.si_sdr, r.si_sdr_ci95, 1)) + " |\n";
            table.push_back({{"test_set", r.set}, {"task", r.task}, {"generator", r.generator}, {"items", r.items},
                             {"cocola_score", number(r.cocola)}, {"cocola_score_ci95", number(r.cocola_ci95)},
                             {"cocola_score_of_truth", number(ratio)}, {"cocola_random_to_truth", number(way)},
                             {"log_mel_l1_db", number(own ? 0.0 : r.log_mel_l1)}, {"log_mel_l1_ci95", number(own ? 0.0 : r.log_mel_l1_ci95)},
                             {"si_sdr_db", number(own ? NAN : r.si_sdr)}, {"si_sdr_ci95", number(own ? NAN : r.si_sdr_ci95)}});
        }
        md += "\nCOCOLA score: the default COCOLA model's similarity of each output to its input (higher: more coherent); "
              "random -> truth: where it lies between the random row (0%) and the truth (100%); 95% intervals over items. Settings: " + settings.dump() + "\n";
        std::string csv = "test_set,task,index,generator,cocola_score,log_mel_l1_db,si_sdr_db\n";
        for (const auto& it : measured) {
            char b[160];
            std::snprintf(b, sizeof(b), ",%zu,%s,%.6g,%.6g,%.6g\n", it.index, it.generator.c_str(), it.m.cocola,
                          it.m.log_mel_l1, it.m.si_sdr);
            csv += csv_field(it.set) + "," + it.task + b;
        }
        fsutil::write_file_atomically(o->out + "/table.md", md);
        fsutil::write_file_atomically(o->out + "/table.json", table.dump(2) + "\n");
        fsutil::write_file_atomically(o->out + "/items.csv", csv);
        std::cout << md << o->out << "/table.md, table.json, items.csv, items.jsonl, audio/\n";
        return 0;
    };
}

}  // namespace cocola::cli
