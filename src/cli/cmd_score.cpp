#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "cli/model_options.hpp"
#include "cli/progress.hpp"
#include "cocola/csv.hpp"
#include "cocola/fsutil.hpp"

namespace cocola::cli {
namespace {

namespace fs = std::filesystem;

using csv::trim;

// The pairs of a --pairs file, and its malformed rows by line number (the good rows are still scored).
struct PairsFile {
    std::vector<std::pair<std::string, std::string>> pairs;
    std::vector<std::string> errors;
};

// CSV as RFC 4180 (quoted fields may hold commas and doubled quotes); columns named by a header row `cond,acc` in any
// order (other columns ignored), else the first two columns; lines starting with # are comments; relative paths are
// relative to the CSV's folder.
PairsFile read_pairs_csv(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(path + ": cannot open pairs file");
    std::stringstream buffer;
    buffer << in.rdbuf();
    const csv::Parsed parsed = csv::parse(buffer.str());
    PairsFile out;
    const fs::path base = fs::path(path).parent_path();
    auto resolve = [&](const std::string& p) { return fs::path(p).is_absolute() ? p : (base / p).string(); };
    size_t cond_col = 0, acc_col = 1;
    bool first = true;
    for (const auto& rec : parsed.records) {
        if (!rec.fields.empty() && !trim(rec.fields[0]).empty() && trim(rec.fields[0])[0] == '#') continue;
        const std::string where = path + ":" + std::to_string(rec.line) + ": ";
        if (first) {
            first = false;
            long c = -1, a = -1;
            for (size_t k = 0; k < rec.fields.size(); ++k) {
                std::string name = trim(rec.fields[k]);
                for (auto& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
                if (name == "cond") c = static_cast<long>(k);
                if (name == "acc") a = static_cast<long>(k);
            }
            if (c >= 0 && a >= 0) {
                cond_col = static_cast<size_t>(c), acc_col = static_cast<size_t>(a);
                continue;
            }
            if (c >= 0 || a >= 0) throw Error(where + "a header row needs both a cond and an acc column");
        }
        if (rec.fields.size() <= std::max(cond_col, acc_col) || trim(rec.fields[cond_col]).empty() ||
            trim(rec.fields[acc_col]).empty()) {
            out.errors.push_back(where + "expected a cond and an acc path (" + std::to_string(rec.fields.size()) + " fields)");
            continue;
        }
        out.pairs.emplace_back(resolve(trim(rec.fields[cond_col])), resolve(trim(rec.fields[acc_col])));
    }
    if (!parsed.error.empty()) out.errors.push_back(path + ":" + parsed.error.substr(5) + " (the rest of the file is not read)");
    if (out.pairs.empty()) throw Error(out.errors.empty() ? path + ": no pairs found" : out.errors.front());
    return out;
}

bool is_audio_name(const fs::path& p) {
    static const std::set<std::string> exts = {".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff"};
    std::string e = p.extension().string();
    for (auto& ch : e) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    return exts.count(e) > 0;
}

std::vector<std::string> list_audio(const std::string& dir) {
    if (!fs::is_directory(dir)) throw Error(dir + ": not a directory");
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(dir))
        if (e.is_regular_file() && is_audio_name(e.path())) files.push_back(e.path().string());
    std::sort(files.begin(), files.end());
    return files;
}

std::string fmt(double v) {
    if (std::isnan(v)) return "nan";
    std::ostringstream o;
    o << std::fixed << std::setprecision(4) << v;
    return o.str();
}

}  // namespace

Runner add_score_command(CLI::App& app) {
    struct Opts {
        ModelOptions model;
        std::string cond, acc, pairs_csv, cond_dir, acc_dir;
        std::vector<std::string> matrix_conds, matrix_cands;
        bool matrix = false, json = false, csv = false;
        std::string out;
    };
    auto o = std::make_shared<Opts>();
    o->model.add_to(app);
    app.add_option("COND", o->cond, "Conditioning audio (e.g. the mix the accompaniment must fit)");
    app.add_option("ACC", o->acc, "Accompaniment audio to score");
    app.add_option("--pairs", o->pairs_csv, "CSV of pairs: columns cond,acc (paths relative to the CSV)");
    app.add_option("--cond-dir", o->cond_dir, "Folder of conditionings, paired with --acc-dir by file name");
    app.add_option("--acc-dir", o->acc_dir, "Folder of accompaniments");
    app.add_flag("--matrix", o->matrix,
                 "All conditionings against all candidates: COND/--cond-dir vs ACC/--acc-dir, best candidate per row");
    app.add_flag("--json", o->json, "Machine-readable JSON output (per-window scores included)");
    app.add_flag("--csv", o->csv, "CSV output");
    app.add_option("--output", o->out, "Write the JSON/CSV/table to this file instead of stdout (atomically)");
    app.footer(
        "The score is sim(f(COND), f(ACC)) averaged over aligned 5 s windows (hop --hop). Clips shorter than\n"
        "5 s are zero-padded (warning); files of different lengths are scored on their common part (warning).\n"
        "Higher means more coherent. Exit status 1 if any file could not be scored (the rest are scored).\n"
        "Examples:\n  cocola score -m model.safetensors mix.wav bass.wav\n"
        "  cocola score -m model.safetensors --pairs pairs.csv --csv\n"
        "  cocola score -m model.safetensors --matrix --cond-dir mixes/ --acc-dir candidates/");
    return [o]() {
        auto m = o->model.load_model();
        auto opts = o->model.score_options();
        eval::check_score_options(m, opts);
        std::ostringstream out;
        int failures = 0;

        if (o->matrix) {
            std::vector<std::string> conds = o->cond_dir.empty() ? std::vector<std::string>{} : list_audio(o->cond_dir);
            std::vector<std::string> cands = o->acc_dir.empty() ? std::vector<std::string>{} : list_audio(o->acc_dir);
            if (!o->cond.empty()) conds.push_back(o->cond);
            if (!o->acc.empty()) cands.push_back(o->acc);
            if (conds.empty() || cands.empty()) throw Error("--matrix needs conditionings and candidates (COND/--cond-dir, ACC/--acc-dir)");
            Progress bar("score", 2);
            auto r = eval::score_matrix(m, conds, cands, opts, [&](size_t d) { bar.update(d); });
            bar.finish();
            for (const auto& w : r.warnings) std::cerr << "cocola: warning: " << w << "\n";
            for (const auto& e : r.errors) std::cerr << "cocola: error: " << e << "\n";
            failures = static_cast<int>(r.errors.size());
            auto best = [&](size_t i) {
                long b = -1;
                for (size_t j = 0; j < cands.size(); ++j)
                    if (!std::isnan(r.scores[i][j]) && (b < 0 || r.scores[i][j] > r.scores[i][b])) b = static_cast<long>(j);
                return b;
            };
            if (o->json) {
                nlohmann::ordered_json j;
                j["conds"] = conds;
                j["cands"] = cands;
                nlohmann::ordered_json rows = nlohmann::ordered_json::array();
                for (size_t i = 0; i < conds.size(); ++i) {
                    nlohmann::ordered_json row = nlohmann::ordered_json::array();
                    for (double v : r.scores[i]) row.push_back(std::isnan(v) ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(v));
                    rows.push_back(row);
                }
                j["scores"] = rows;
                nlohmann::ordered_json b = nlohmann::ordered_json::array();
                for (size_t i = 0; i < conds.size(); ++i) {
                    long k = best(i);
                    b.push_back(k < 0 ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(cands[k]));
                }
                j["best"] = b;
                j["errors"] = r.errors;
                out << j.dump(2) << "\n";
            } else if (o->csv) {
                out << "cond";
                for (const auto& c : cands) out << "," << csv_field(c);
                out << ",best\n";
                for (size_t i = 0; i < conds.size(); ++i) {
                    out << csv_field(conds[i]);
                    for (double v : r.scores[i]) out << "," << fmt(v);
                    long k = best(i);
                    out << "," << (k < 0 ? "" : csv_field(cands[k])) << "\n";
                }
            } else {
                for (size_t j = 0; j < cands.size(); ++j) out << "  [" << j << "] " << cands[j] << "\n";
                for (size_t i = 0; i < conds.size(); ++i) {
                    out << conds[i] << "\n   ";
                    for (size_t j = 0; j < cands.size(); ++j) out << " [" << j << "] " << fmt(r.scores[i][j]);
                    long k = best(i);
                    out << "\n    best: " << (k < 0 ? "-" : cands[k]) << "\n";
                }
            }
        } else {
            std::vector<std::pair<std::string, std::string>> pairs;
            std::vector<std::string> pairs_file_errors;
            if (!o->pairs_csv.empty()) {
                auto file = read_pairs_csv(o->pairs_csv);
                pairs = std::move(file.pairs);
                pairs_file_errors = std::move(file.errors);
                for (const auto& e : pairs_file_errors) std::cerr << "cocola: error: " << e << "\n";
                failures += static_cast<int>(pairs_file_errors.size());
            }
            if (!o->cond_dir.empty() || !o->acc_dir.empty()) {
                if (o->cond_dir.empty() || o->acc_dir.empty()) throw Error("--cond-dir and --acc-dir go together");
                for (const auto& c : list_audio(o->cond_dir)) {
                    // Paired by file name; a missing partner is reported by the loader like any missing file.
                    pairs.emplace_back(c, (fs::path(o->acc_dir) / fs::path(c).filename()).string());
                }
                if (pairs.empty()) throw Error(o->cond_dir + ": no audio files");
            }
            if (!o->cond.empty() || !o->acc.empty()) {
                if (o->cond.empty() || o->acc.empty()) throw Error("give both COND and ACC");
                pairs.emplace_back(o->cond, o->acc);
            }
            if (pairs.empty()) throw Error("nothing to score: give COND ACC, --pairs FILE.csv or --cond-dir/--acc-dir");
            Progress bar("score", pairs.size());
            auto res = eval::score_pairs(m, pairs, opts, [&](size_t d) { bar.update(d); });
            bar.finish();
            double sum = 0;
            size_t n = 0;
            for (const auto& r : res) {
                for (const auto& w : r.warnings) std::cerr << "cocola: warning: " << r.cond << " / " << r.acc << ": " << w << "\n";
                if (!r.error.empty()) {
                    std::cerr << "cocola: error: " << r.error << "\n";
                    ++failures;
                } else {
                    sum += r.score;
                    ++n;
                }
            }
            if (o->json) {
                nlohmann::ordered_json j;
                j["model"] = o->model.model_path.empty() ? default_model_path() : o->model.model_path;
                j["mode"] = o->model.mode;
                j["whole"] = o->model.whole;
                j["hop_seconds"] = o->model.hop;
                nlohmann::ordered_json arr = nlohmann::ordered_json::array();
                for (const auto& r : res) {
                    nlohmann::ordered_json p;
                    p["cond"] = r.cond;
                    p["acc"] = r.acc;
                    if (r.error.empty()) {
                        p["score"] = r.score;
                        p["window_scores"] = r.window_scores;
                    } else {
                        p["error"] = r.error;
                    }
                    if (!r.warnings.empty()) p["warnings"] = r.warnings;
                    arr.push_back(p);
                }
                j["pairs"] = arr;
                if (!pairs_file_errors.empty()) j["pairs_file_errors"] = pairs_file_errors;
                j["mean"] = n ? nlohmann::ordered_json(sum / n) : nlohmann::ordered_json(nullptr);
                j["failed"] = failures;
                out << j.dump(2) << "\n";
            } else if (o->csv) {
                out << "cond,acc,score,windows,error\n";
                for (const auto& r : res)
                    out << csv_field(r.cond) << "," << csv_field(r.acc) << "," << (r.error.empty() ? fmt(r.score) : "")
                        << "," << r.window_scores.size() << "," << csv_field(r.error) << "\n";
            } else if (res.size() == 1 && res[0].error.empty()) {
                out << fmt(res[0].score) << "\n";
            } else {
                out << std::setw(10) << "score" << "  windows  cond -> acc\n";
                for (const auto& r : res)
                    out << std::setw(10) << (r.error.empty() ? fmt(r.score) : "failed") << "  " << std::setw(7)
                        << r.window_scores.size() << "  " << r.cond << " -> " << r.acc << "\n";
                if (n > 1) out << std::setw(10) << fmt(sum / n) << "  mean of " << n << " pairs\n";
            }
        }
        if (o->out.empty()) std::cout << out.str();
        else fsutil::write_file_atomically(o->out, out.str());
        return failures ? 1 : 0;
    };
}

}  // namespace cocola::cli
