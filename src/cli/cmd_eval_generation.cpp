// cocola eval-generation: the generation table of docs/generation.md (the paper's Table 3 and more). For each test
// set and task, N test chunks (an input sub-mix and the target the task asks for); each generator's output is
// scored by COCOLA against the input, measured against the target, and embedded for set distances (FAD, KAD) to
// the real targets. Items are appended to DIR/items.jsonl as they finish (embeddings to DIR/embeddings), so an
// interrupted evaluation continues with --resume; tables, chart and the listening page are written at the end.
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
#include "cocola/features.hpp"
#include "cocola/fsutil.hpp"
#include "cocola/generate.hpp"
#include "cocola/generation_eval.hpp"
#include "cocola/npy.hpp"
#include "cocola/rng.hpp"

namespace cocola::cli {
namespace {

namespace fs = std::filesystem;

std::string format_mean(double mean, double ci, int digits) {
    if (!std::isfinite(mean)) return "-";
    char b[64];
    if (std::isfinite(ci)) std::snprintf(b, sizeof(b), "%.*f ± %.*f", digits, mean, digits, ci);
    else std::snprintf(b, sizeof(b), "%.*f", digits, mean);
    return b;
}
std::string format_range(double x, double lo, double hi) {
    if (!std::isfinite(x)) return "-";
    char b[96];
    if (std::isfinite(lo)) std::snprintf(b, sizeof(b), "%.3f [%.3f, %.3f]", x, lo, hi);
    else std::snprintf(b, sizeof(b), "%.3f", x);
    return b;
}

nlohmann::json number(double x) { return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr); }
double from_json(const nlohmann::json& j) { return j.is_number() ? j.get<double>() : NAN; }

// An embedding file: [D] or [T, D] (rows averaged), as float.
std::vector<float> load_embedding(const std::string& path) {
    const npy::Array a = npy::load(path);
    if (a.shape.empty() || a.shape.size() > 2 || a.numel() == 0)
        throw Error(path + ": expected an embedding of shape [D] or [T, D]");
    if (a.shape.size() == 1) return a.data;
    const int64_t t = a.shape[0], d = a.shape[1];
    std::vector<float> mean(static_cast<size_t>(d), 0.f);
    for (int64_t i = 0; i < t; ++i)
        for (int64_t k = 0; k < d; ++k) mean[static_cast<size_t>(k)] += a.data[static_cast<size_t>(i * d + k)] / static_cast<float>(t);
    return mean;
}
void save_embedding(const std::string& path, const std::vector<float>& e) {
    npy::save(path, {static_cast<int64_t>(e.size())}, e.data());
}

}  // namespace

Runner add_eval_generation_command(CLI::App& app) {
    struct Opts {
        std::vector<std::string> data, tasks = {"accompany", "extract"},
                                       generators = {"componet", "msdm", "truth", "resynth", "random"}, embeddings;
        std::string split = "test", out = "generation-eval", model, msdm_model, vae, vocoder = "neural", vocoder_model,
                    cocola_model, second_model, guide_model, cache_dir = data::default_cache_dir();
        size_t n = 40;
        int examples = -1, msdm_candidates = 12;
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
    app.add_option("--generators", o->generators, "componet (the model), msdm (the baseline; accompany only), truth (the "
                                                  "target), resynth (the target through the VAE and vocoder), random (a "
                                                  "sub-mix of another song)")
        ->delimiter(',')->check(CLI::IsMember(componet::generation_generators()))->capture_default_str();
    app.add_option("--seed", o->seed, "Seed of the items and of generation")->capture_default_str();
    app.add_option("--steps", o->g.sampling.steps, "DDIM steps")->capture_default_str()->check(CLI::Range(1, 1000));
    app.add_option("--guidance", o->g.sampling.guidance, "CompoNet's classifier-free guidance scale")->capture_default_str()
        ->check(CLI::Range(0.0, 100.0));
    app.add_option("--candidates", o->g.candidates, "CompoNet's candidates per item, the kept one chosen by --select")
        ->capture_default_str()->check(CLI::Range(1, 64));
    app.add_option("--select", o->g.select, "cocola (highest score of the judge, -m, against the input: it then judges its "
                                            "own pick), guide (highest score of --guide-model, not the judge) or norm "
                                            "(highest L2 norm)")
        ->check(CLI::IsMember({"cocola", "guide", "norm"}))->capture_default_str();
    app.add_option("--cocola-guidance", o->g.cocola_guidance, "CompoNet with COCOLA-guided sampling at this scale (0: off)")
        ->capture_default_str()->check(CLI::Range(0.0, 100.0));
    app.add_option("--guide-model", o->guide_model, "The guide: a COCOLA model of the mel front-end, not the judge (-m) "
                                                 "(default: models/cocola_mel_guide.safetensors)");
    app.add_option("--guide-views", o->g.guide_views, "With --cocola-guidance: the guide's score averaged over this many views of "
                                                     "the decoded spectrogram (shifted crops, gain changes), so that the "
                                                     "gradient follows what they share (1: the spectrogram alone)")
        ->capture_default_str()->check(CLI::Range(1, 64));
    app.add_option("--level", o->g.level, "keep: the generators' outputs as they are (the paper's protocol); input: each "
                                          "output brought to its input's loudness first; auto: as `cocola generate` does "
                                          "(keep for extraction, input for accompaniment)")
        ->check(CLI::IsMember({"keep", "input", "auto"}))->capture_default_str();
    app.add_option("--msdm-candidates", o->msdm_candidates, "MSDM's candidates per item; the loudest is kept (the paper: 12)")
        ->capture_default_str()->check(CLI::Range(1, 64));
    app.add_option("--model", o->model, "CompoNet weights (default: models/componet_default.safetensors)");
    app.add_option("--msdm-model", o->msdm_model, "MSDM weights (default: models/msdm_default.safetensors)");
    app.add_option("--vae", o->vae, "VAE (default: models/vae_default.safetensors)");
    app.add_option("--vocoder", o->vocoder, "neural or griffin-lim")->check(CLI::IsMember({"neural", "griffin-lim"}))
        ->capture_default_str();
    app.add_option("--vocoder-model", o->vocoder_model, "Neural vocoder (default: models/vocoder_default.safetensors)");
    app.add_option("-m,--cocola-model", o->cocola_model, "COCOLA model that scores (default: the shipped one)");
    app.add_option("--second-model", o->second_model, "A second COCOLA model whose score is a second column (e.g. one "
                                                      "trained on the mel front-end)");
    app.add_option("--embeddings", o->embeddings, "NAME=DIR: embeddings made elsewhere (e.g. CLAP, VGGish) of DIR/audio's "
                                                  "files, as DIR/<file name without .wav>.npy ([D] or [T, D]); FAD and KAD "
                                                  "in that space (repeatable; read at the end)");
    app.add_option("--examples", o->examples, "Items per set and task whose audio and spectrograms are written (-1: all)")
        ->capture_default_str()->check(CLI::Range(-1, 1000000));
    app.add_option("-o,--out", o->out, "Output folder: table.md, table.json, distances.json, items.csv, items.jsonl, "
                                       "chart.svg, index.html, audio/, embeddings/")
        ->capture_default_str();
    app.add_flag("--resume", o->resume, "Continue the evaluation in --out (its items.jsonl) with the same options");
    app.add_option("--cache-dir", o->cache_dir, "Where dataset roots are indexed")->capture_default_str();
    app.footer("Example:\n  cocola eval-generation --data data/demo,data/openmsx --n 40 --steps 50 -o out/generation\n"
               "With msdm among the generators the items use only MSDM's sources and keep each tag on one side.\n"
               "Open DIR/index.html to listen.");
    return [o]() {
        const std::set<std::string> gens(o->generators.begin(), o->generators.end());
        const bool with_msdm = gens.count("msdm") > 0;
        std::vector<std::pair<std::string, std::string>> user_spaces;
        for (const auto& spec : o->embeddings) {
            const auto eq = spec.find('=');
            if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size()) throw Error("--embeddings " + spec + ": expected NAME=DIR");
            if (!fs::is_directory(spec.substr(eq + 1))) throw Error("--embeddings " + spec + ": " + spec.substr(eq + 1) + " is not a folder");
            user_spaces.push_back({spec.substr(0, eq), spec.substr(eq + 1)});
        }
        // What defines the items and the outputs: a resumed evaluation must have the same.
        nlohmann::json settings = {
            {"data", o->data}, {"split", o->split}, {"n", o->n}, {"tasks", o->tasks}, {"seed", o->seed},
            {"steps", o->g.sampling.steps}, {"guidance", o->g.sampling.guidance}, {"candidates", o->g.candidates},
            {"select", o->g.select}, {"model", o->model}, {"vae", o->vae}, {"vocoder", o->vocoder},
            {"vocoder_model", o->vocoder_model}, {"cocola_model", o->cocola_model}, {"second_model", o->second_model},
            {"cocola_guidance", o->g.cocola_guidance}, {"guide_model", o->guide_model}, {"guide_views", o->g.guide_views}, {"items_for_msdm", with_msdm}, {"msdm_model", o->msdm_model}, {"msdm_candidates", o->msdm_candidates}};
        // Recorded only when not "keep", so that evaluations made before --level existed still resume.
        if (o->g.level != "keep") settings["level"] = o->g.level;
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
                    it.m.cocola2 = from_json(j.value("cocola_score_2", nlohmann::json()));
                    it.m.log_mel_l1 = from_json(j.at("log_mel_l1_db"));
                    it.m.si_sdr = from_json(j.at("si_sdr_db"));
                    it.m.level = from_json(j.value("level_db", nlohmann::json()));  // absent in evaluations before it
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
        std::unique_ptr<componet::Componet> model, msdm;
        std::vector<std::string> vocabulary = componet::builtin_tags();
        if (gens.count("componet")) {
            model = std::make_unique<componet::Componet>(
                componet::Componet::load(o->model.empty() ? default_generator_path("componet_default", "--model") : o->model));
            if (!model->config().controlnet || model->config().is_msdm())
                throw Error("--model: not a CompoNet with its ControlNet adapter (a stage-1 or MSDM model cannot read an input)");
            vocabulary = model->config().vocabulary;
        }
        if (with_msdm) {
            msdm = std::make_unique<componet::Componet>(
                componet::Componet::load(o->msdm_model.empty() ? default_generator_path("msdm_default", "--msdm-model") : o->msdm_model));
            if (!msdm->config().is_msdm()) throw Error("--msdm-model: not an MSDM model (it has no fixed sources)");
            const std::set<std::string> known(vocabulary.begin(), vocabulary.end());
            vocabulary.clear();
            for (const auto& s : msdm->config().sources)
                if (known.count(s)) vocabulary.push_back(s);
        }
        std::unique_ptr<generate::Vae> vae;
        std::unique_ptr<generate::Vocoder> vocoder;
        if (gens.count("componet") || gens.count("resynth") || with_msdm) {
            vae = std::make_unique<generate::Vae>(generate::Vae::load(o->vae.empty() ? default_generator_path("vae_default", "--vae") : o->vae));
            if (o->vocoder == "neural")
                vocoder = std::make_unique<generate::Vocoder>(generate::Vocoder::load(
                    o->vocoder_model.empty() ? default_generator_path("vocoder_default", "--vocoder-model") : o->vocoder_model));
        }
        const std::string judge_path = o->cocola_model.empty() ? default_model_path() : o->cocola_model;
        if (judge_path.empty()) throw Error("no COCOLA model ships here: give -m / --cocola-model");
        const model::Model judge = model::Model::load(judge_path);
        std::unique_ptr<model::Model> guide;
        if (o->g.cocola_guidance > 0 || o->g.select == "guide") {
            guide = load_guide_model(o->guide_model);
            if (fs::exists(judge_path) && fs::equivalent(o->guide_model, judge_path))
                throw Error("--guide-model is the judge (-m): guided outputs must be judged by a model they were not guided by");
            o->g.guide = guide.get();
        }
        std::unique_ptr<model::Model> judge2;
        if (!o->second_model.empty()) judge2 = std::make_unique<model::Model>(model::Model::load(o->second_model));

        struct Set {
            std::string name;
            std::vector<componet::GenerationItem> items;
        };
        std::vector<Set> sets;
        auto runs_on = [](const std::string& gen, const std::string& task) { return gen != "msdm" || task == "accompany"; };
        size_t total = 0;
        for (const auto& d : o->data) {
            const std::string dir = data::ensure_cache(d, o->cache_dir);
            const data::StemCache cache(dir);
            for (const auto& task : o->tasks) {
                Set s{generation_set_name(d), componet::draw_generation_items(cache, generation_set_name(d), o->split, task, o->n, o->seed, vocabulary, with_msdm)};
                if (s.items.size() < o->n)
                    std::cerr << "warning: " << d << ": only " << s.items.size() << " " << task << " items found\n";
                for (const auto& gname : o->generators) total += runs_on(gname, task) ? s.items.size() : 0;
                sets.push_back(std::move(s));
            }
        }
        fs::create_directories(o->out + "/audio");
        fs::create_directories(o->out + "/embeddings");
        fsutil::write_file_atomically(settings_path, settings.dump(2) + "\n");
        bool ends_cut = false;  // an interrupted write left a partial last line: the next record starts on a new one
        if (fs::exists(log_path) && fs::file_size(log_path) > 0) {
            std::ifstream last(log_path, std::ios::binary);
            last.seekg(-1, std::ios::end);
            ends_cut = last.get() != '\n';
        }
        std::ofstream log(log_path, std::ios::app);
        if (!log) throw Error(log_path + ": cannot write");
        if (ends_cut) log << "\n";
        auto file_stem = [](const componet::GenerationItem& item) { return item.set + "_" + item.task + "_" + std::to_string(item.index); };
        auto listened = [&](const componet::GenerationItem& item) { return o->examples < 0 || item.index < static_cast<size_t>(o->examples); };
        const std::string emb_dir = o->out + "/embeddings/", audio_dir = o->out + "/audio/";

        Progress bar("eval-generation", total);
        bar.resume_from(done.size());
        for (const auto& s : sets) {
            for (const auto& item : s.items) {
                const std::string stem = file_stem(item);
                if (listened(item)) {
                    if (!fs::exists(audio_dir + stem + "_input.wav")) audio::write_wav(audio_dir + stem + "_input.wav", item.input);
                    if (!fs::exists(audio_dir + stem + "_target.wav")) audio::write_wav(audio_dir + stem + "_target.wav", item.target);
                }
                // The real target's embeddings: the reference set of the distances.
                if (!fs::exists(emb_dir + stem + "_target.cocola.npy")) {
                    save_embedding(emb_dir + stem + "_target.cocola.npy", componet::measure_output(&judge, item, item.target).cocola_embedding);
                    if (vae) save_embedding(emb_dir + stem + "_target.vae.npy", componet::vae_embedding(*vae, item.target));
                }
                for (const auto& gname : o->generators) {
                    if (!runs_on(gname, item.task) || done.count({item.set, item.task, item.index, gname})) continue;
                    std::vector<float> output;
                    const uint64_t item_seed = mix_seed(o->seed, item.index * 2 + (item.task == "extract"));
                    if (gname == "truth") output = item.target;
                    else if (gname == "random") output = item.random;
                    else if (gname == "resynth") output = generate::resynthesize(item.target, vae.get(), {}, vocoder.get());
                    else if (gname == "msdm") {
                        componet::GenerateOptions go = o->g;
                        go.sampling.seed = item_seed;
                        go.candidates = o->msdm_candidates;
                        go.select = "norm";  // the paper's choice for MSDM: it tends to generate silence
                        std::vector<std::string> wanted;
                        for (const auto& t : item.prompt.out)
                            if (std::find(wanted.begin(), wanted.end(), t.name) == wanted.end()) wanted.push_back(t.name);
                        output = componet::generate_msdm_audio(*msdm, *vae, vocoder.get(), nullptr, item.input_sources, wanted, go).audio;
                    } else {
                        componet::GenerateOptions go = o->g;
                        go.sampling.seed = item_seed;
                        // The judge only picks among candidates here (for --select guide, generate_audio picks by
                        // the guide instead); the output is scored below, once.
                        const model::Model* picker = go.select == "cocola" && go.candidates > 1 ? &judge : nullptr;
                        output = componet::generate_audio(*model, *vae, vocoder.get(), picker, item.input, item.prompt, go).audio;
                    }
                    output.resize(static_cast<size_t>(generate::kChunkSamples), 0.f);
                    componet::MeasuredItem it{item.set, item.task, gname, item.index,
                                              componet::measure_output(&judge, item, output, judge2.get())};
                    save_embedding(emb_dir + stem + "_" + gname + ".cocola.npy", it.m.cocola_embedding);
                    if (vae) save_embedding(emb_dir + stem + "_" + gname + ".vae.npy", componet::vae_embedding(*vae, output));
                    if (listened(item) && gname != "truth") audio::write_wav(audio_dir + stem + "_" + gname + ".wav", output);
                    const nlohmann::json j = {{"set", it.set}, {"task", it.task}, {"index", it.index}, {"generator", gname},
                                              {"track", item.track}, {"offset_seconds", item.offset / 16000.0},
                                              {"prompt", componet::format_prompt(item.prompt)},
                                              {"random_track", gname == "random" ? item.random_track : ""},
                                              {"cocola_score", number(it.m.cocola)}, {"cocola_score_2", number(it.m.cocola2)},
                                              {"log_mel_l1_db", number(it.m.log_mel_l1)}, {"si_sdr_db", number(it.m.si_sdr)},
                                              {"level_db", number(it.m.level)}};
                    log << j.dump() << "\n" << std::flush;
                    measured.push_back(it);
                    bar.tick();
                }
            }
        }
        bar.finish();

        // ------------------------------------------------------------ scores
        const auto rows = componet::summarize_generation(measured);
        std::map<std::pair<std::string, std::string>, double> truth, random;
        for (const auto& r : rows) {
            if (r.generator == "truth") truth[{r.set, r.task}] = r.cocola;
            if (r.generator == "random") random[{r.set, r.task}] = r.cocola;
        }
        const bool two = judge2 != nullptr;
        std::string md = std::string("| test set | task | generator | items | COCOLA score | of the truth's | random -> truth |") +
                         (two ? " second COCOLA model |" : "") + " log-mel L1 to the target (dB) | SI-SDR to the target (dB) | level vs the target (dB) |\n" +
                         "|---|---|---|---|---|---|---|" + (two ? "---|" : "") + "---|---|---|\n";
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
                  (two ? format_mean(r.cocola2, r.cocola2_ci95, 2) + " | " : "") +
                  (own ? "0" : format_mean(r.log_mel_l1, r.log_mel_l1_ci95, 2)) + " | " +
                  (own ? "-" : format_mean(r.si_sdr, r.si_sdr_ci95, 1)) + " | " +
                  (own ? "0" : format_mean(r.level, r.level_ci95, 1)) + " |\n";
            table.push_back({{"test_set", r.set}, {"task", r.task}, {"generator", r.generator}, {"items", r.items},
                             {"cocola_score", number(r.cocola)}, {"cocola_score_ci95", number(r.cocola_ci95)},
                             {"cocola_score_2", number(r.cocola2)}, {"cocola_score_2_ci95", number(r.cocola2_ci95)},
                             {"cocola_score_of_truth", number(ratio)}, {"cocola_random_to_truth", number(way)},
                             {"log_mel_l1_db", number(own ? 0.0 : r.log_mel_l1)}, {"log_mel_l1_ci95", number(own ? 0.0 : r.log_mel_l1_ci95)},
                             {"si_sdr_db", number(own ? NAN : r.si_sdr)}, {"si_sdr_ci95", number(own ? NAN : r.si_sdr_ci95)},
                             {"level_db", number(own ? 0.0 : r.level)}, {"level_ci95", number(own ? 0.0 : r.level_ci95)}});
        }
        md += "\nCOCOLA score: the default COCOLA model's similarity of each output to its input (higher: more coherent); "
              "random -> truth: where it lies between the random row (0%) and the truth (100%); level: the output's RMS over "
              "the target's (0: as loud); 95% intervals over items.\n";

        // ------------------------------------------------------------ set distances to the real targets
        std::vector<std::pair<std::string, std::string>> spaces = {{"cocola", ""}};
        if (vae) spaces.push_back({"vae", ""});
        for (const auto& u : user_spaces) spaces.push_back(u);
        auto embedding_of = [&](const std::string& space, const std::string& dir, const std::string& stem_gen) {
            if (dir.empty()) return load_embedding(emb_dir + stem_gen + "." + space + ".npy");
            const std::string p = dir + "/" + stem_gen + ".npy";
            if (!fs::exists(p)) throw Error("--embeddings " + space + ": " + p + " is missing (embed every file of " + audio_dir + ")");
            return load_embedding(p);
        };
        std::vector<componet::DistanceRow> distances;
        std::vector<std::string> set_names;
        for (const auto& s : sets)
            if (std::find(set_names.begin(), set_names.end(), s.name) == set_names.end()) set_names.push_back(s.name);
        if (set_names.size() > 1) set_names.push_back("all");
        for (const auto& [space, dir] : spaces)
            for (const auto& sname : set_names)
                for (const auto& task : o->tasks)
                    for (const auto& gname : o->generators) {
                        if (gname == "truth" || !runs_on(gname, task)) continue;  // the targets are the reference
                        std::vector<std::vector<float>> outs, targets;
                        for (const auto& s : sets)
                            for (const auto& item : s.items) {
                                if (item.task != task || (sname != "all" && s.name != sname)) continue;
                                outs.push_back(embedding_of(space, dir, file_stem(item) + "_" + gname));
                                targets.push_back(embedding_of(space, dir, file_stem(item) + "_target"));
                            }
                        if (outs.empty()) continue;
                        componet::DistanceRow d = componet::set_distances(outs, targets, o->seed);
                        d.set = sname, d.task = task, d.generator = gname, d.space = space;
                        distances.push_back(d);
                    }
        nlohmann::json dist_json = nlohmann::json::array();
        if (!distances.empty()) {
            md += "\n| test set | task | generator | embedding | items | FAD [95%] | FAD-inf | KAD [95%] |\n|---|---|---|---|---|---|---|---|\n";
            for (const auto& d : distances) {
                md += "| " + d.set + " | " + d.task + " | " + d.generator + " | " + d.space + " | " + std::to_string(d.items) + " | " +
                      format_range(d.fad, d.fad_low, d.fad_high) + " | " + format_range(d.fad_inf, NAN, NAN) + " | " +
                      format_range(d.kad, d.kad_low, d.kad_high) + " |\n";
                dist_json.push_back({{"test_set", d.set}, {"task", d.task}, {"generator", d.generator}, {"embedding", d.space},
                                     {"items", d.items}, {"fad", number(d.fad)}, {"fad_low", number(d.fad_low)},
                                     {"fad_high", number(d.fad_high)}, {"fad_inf", number(d.fad_inf)}, {"kad", number(d.kad)},
                                     {"kad_low", number(d.kad_low)}, {"kad_high", number(d.kad_high)}});
            }
            md += "\nDistances of each generator's outputs to the real targets of the same items (lower: closer to real "
                  "audio of that kind; they do not measure coherence): FAD (Gaussians fitted to each set; biased upwards "
                  "for few items), FAD-inf (its extrapolation to infinitely many), KAD (x100 unbiased MMD^2, Gaussian "
                  "kernel of the targets' median distance, output-target pairs of one item left out of the cross term); [95%]: bootstrap over items, shifted by the resamples' bias. Embeddings: cocola (the default "
                  "model's), vae (the VAE latent's mean and spread over time)" +
                  std::string(user_spaces.empty() ? "" : ", and those given by --embeddings") + ".\n";
        }
        md += "\nSettings: " + settings.dump() + "\n";

        std::string csv = "test_set,task,index,generator,cocola_score,cocola_score_2,log_mel_l1_db,si_sdr_db,level_db\n";
        for (const auto& it : measured) {
            char b[240];
            std::snprintf(b, sizeof(b), ",%zu,%s,%.6g,%.6g,%.6g,%.6g,%.6g\n", it.index, it.generator.c_str(), it.m.cocola, it.m.cocola2,
                          it.m.log_mel_l1, it.m.si_sdr, it.m.level);
            csv += csv_field(it.set) + "," + it.task + b;
        }

        // ------------------------------------------------------------ chart, spectrograms, page
        std::string set_list;
        for (const auto& d : o->data) set_list += (set_list.empty() ? "" : ", ") + generation_set_name(d);
        componet::write_score_chart_svg(o->out + "/chart.svg", rows, "COCOLA score per generator (" + set_list + ", " + o->split + ")");
        std::map<std::tuple<std::string, std::string, size_t, std::string>, double> score_of;
        for (const auto& it : measured) score_of[{it.set, it.task, it.index, it.generator}] = it.m.cocola;
        std::vector<componet::PageItem> page;
        for (const auto& s : sets)
            for (const auto& item : s.items) {
                if (!listened(item)) continue;
                const std::string stem = file_stem(item);
                componet::PageItem p;
                p.set = item.set, p.task = item.task, p.index = item.index, p.prompt = componet::format_prompt(item.prompt);
                p.input_audio = "audio/" + stem + "_input.wav";
                p.target_audio = "audio/" + stem + "_target.wav";
                std::vector<at::Tensor> mels = {generate::mel_spectrogram(item.input.data(), item.input.size()),
                                                generate::mel_spectrogram(item.target.data(), item.target.size())};
                for (const auto& gname : o->generators) {
                    if (!runs_on(gname, item.task)) continue;
                    p.generators.push_back(gname);
                    const auto sc = score_of.find({item.set, item.task, item.index, gname});
                    p.scores.push_back(sc == score_of.end() ? NAN : sc->second);
                    const std::string wav = gname == "truth" ? stem + "_target.wav" : stem + "_" + gname + ".wav";
                    p.outputs.push_back(fs::exists(audio_dir + wav) ? "audio/" + wav : "");
                    if (gname != "truth" && fs::exists(audio_dir + wav)) {
                        const auto a = audio::load_mono(audio_dir + wav);
                        mels.push_back(generate::mel_spectrogram(a.data(), a.size()));
                    }
                }
                p.spectrogram = "audio/" + stem + ".png";
                generate::write_spectrogram_png(audio_dir + stem + ".png", mels);
                page.push_back(std::move(p));
            }
        fsutil::write_file_atomically(o->out + "/table.md", md);
        fsutil::write_file_atomically(o->out + "/table.json", table.dump(2) + "\n");
        fsutil::write_file_atomically(o->out + "/distances.json", dist_json.dump(2) + "\n");
        fsutil::write_file_atomically(o->out + "/items.csv", csv);
        componet::write_listening_page(o->out + "/index.html", "cocola eval-generation", rows, distances, "chart.svg", page,
                                       settings.dump());
        std::cout << md << o->out << "/table.md, table.json, distances.json, items.csv, items.jsonl, chart.svg, index.html, audio/, embeddings/\n";
        return 0;
    };
}

std::string generation_set_name(const std::string& dataset) {
    const fs::path p(dataset);
    return p.filename().empty() ? p.parent_path().filename().string() : p.filename().string();
}

}  // namespace cocola::cli
