// cocola eval: the paper's Table 2 (coherent sub-mix classification accuracy, Eq. 8) for models x test sets,
// as markdown, JSON and an SVG heatmap.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/commands.hpp"
#include "cli/progress.hpp"
#include "cocola/data.hpp"
#include "cocola/error.hpp"
#include "cocola/evaluate.hpp"
#include "cocola/fsutil.hpp"
#include "cocola/model.hpp"

namespace cocola::cli {
namespace {

namespace fs = std::filesystem;

std::string folder_name(const std::string& path) { return eval::table_name(path); }
using eval::unique_names;

std::string pct(double v, int digits = 2) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.*f", digits, 100.0 * v);
    return buf;
}

std::string xml_escape(const std::string& s) {
    std::string o;
    for (char c : s) {
        switch (c) {
            case '&': o += "&amp;"; break;
            case '<': o += "&lt;"; break;
            case '>': o += "&gt;"; break;
            case '"': o += "&quot;"; break;
            default: o += c;
        }
    }
    return o;
}

std::string md_escape(const std::string& s) {
    std::string o;
    for (char c : s) o += c == '|' ? std::string("\\|") : std::string(1, c);
    return o;
}

struct DataSet {
    std::string input, cache_dir, name;
    std::unique_ptr<data::StemCache> cache;
    size_t items = 0, batches = 0, dropped = 0, same_track = 0;
    std::vector<data::EvalItem> protocol;  // the evaluation items (kept for --rows only)
};

struct Cell {
    eval::EvalResult r;
    double seconds = 0;
};

// Colour of an accuracy on a white -> blue ramp, starting at chance (1/K): chance and below is the palest, so the
// eye reads "how far above chance".
std::string cell_colour(double acc, int k, double* lightness = nullptr) {
    const double chance = 1.0 / k;
    double t = (acc - chance) / (1.0 - chance);
    t = std::min(1.0, std::max(0.0, t));
    const double lo[3] = {247, 251, 255}, hi[3] = {8, 48, 107};
    int c[3];
    for (int i = 0; i < 3; ++i) c[i] = static_cast<int>(std::lround(lo[i] + (hi[i] - lo[i]) * t));
    if (lightness) *lightness = (0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]) / 255.0;
    char buf[16];
    std::snprintf(buf, sizeof(buf), "#%02x%02x%02x", c[0], c[1], c[2]);
    return buf;
}

std::string heatmap_svg(const std::vector<std::string>& models, const std::vector<DataSet>& sets,
                        const std::vector<std::vector<Cell>>& cells, int k, const std::string& split) {
    // Rough text widths for a 13 px sans-serif font: enough to size margins without a font library.
    auto text_w = [](const std::string& s, double px) { return 0.6 * px * static_cast<double>(s.size()); };
    double label_w = 60;
    for (const auto& m : models) label_w = std::max(label_w, text_w(m, 13) + 20);
    double cell_w = 120;
    for (const auto& d : sets) cell_w = std::max(cell_w, text_w(d.name, 13) + 16);
    const double cell_h = 48, top = 70, left = label_w, legend_h = 60;
    // At least as wide as the title and subtitle lines (about 7 px per character at 13 px).
    const double W = std::max(left + cell_w * sets.size() + 20, 620.0), H = top + cell_h * models.size() + legend_h;
    std::ostringstream s;
    s << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H << "\" viewBox=\"0 0 " << W
      << " " << H << "\" font-family=\"sans-serif\">\n";
    s << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
    s << "<text x=\"10\" y=\"22\" font-size=\"15\" font-weight=\"bold\">COCOLA coherent sub-mix classification accuracy (%)</text>\n";
    s << "<text x=\"10\" y=\"40\" font-size=\"12\" fill=\"#444\">K = " << k << ", split " << xml_escape(split)
      << "; mean over batches &#177; 95% CI; chance " << pct(1.0 / k, 1) << "%</text>\n";
    for (size_t j = 0; j < sets.size(); ++j)
        s << "<text x=\"" << left + cell_w * (j + 0.5) << "\" y=\"" << top - 8
          << "\" font-size=\"13\" text-anchor=\"middle\">" << xml_escape(sets[j].name) << "</text>\n";
    for (size_t i = 0; i < models.size(); ++i) {
        const double y = top + cell_h * i;
        s << "<text x=\"" << left - 10 << "\" y=\"" << y + cell_h / 2 + 5 << "\" font-size=\"13\" text-anchor=\"end\">"
          << xml_escape(models[i]) << "</text>\n";
        for (size_t j = 0; j < sets.size(); ++j) {
            const auto& r = cells[i][j].r;
            double light = 1;
            const std::string fill = cell_colour(r.accuracy, k, &light);
            const double x = left + cell_w * j;
            const char* ink = light < 0.55 ? "white" : "black";
            s << "<rect x=\"" << x << "\" y=\"" << y << "\" width=\"" << cell_w << "\" height=\"" << cell_h
              << "\" fill=\"" << fill << "\" stroke=\"white\" stroke-width=\"2\"><title>" << xml_escape(models[i])
              << " on " << xml_escape(sets[j].name) << ": " << pct(r.accuracy) << " &#177; " << pct(r.ci95) << " % ("
              << r.batches << " batches)</title></rect>\n";
            s << "<text x=\"" << x + cell_w / 2 << "\" y=\"" << y + cell_h / 2 - 1 << "\" font-size=\"15\" fill=\"" << ink
              << "\" text-anchor=\"middle\">" << pct(r.accuracy) << "</text>\n";
            s << "<text x=\"" << x + cell_w / 2 << "\" y=\"" << y + cell_h / 2 + 15 << "\" font-size=\"11\" fill=\"" << ink
              << "\" text-anchor=\"middle\">&#177; " << pct(r.ci95) << "</text>\n";
        }
    }
    // Legend: the colour ramp from chance to 100%.
    const double ly = top + cell_h * models.size() + 20, lw = std::min(240.0, W - left - 20);
    s << "<defs><linearGradient id=\"ramp\"><stop offset=\"0\" stop-color=\"" << cell_colour(1.0 / k, k)
      << "\"/><stop offset=\"1\" stop-color=\"" << cell_colour(1.0, k) << "\"/></linearGradient></defs>\n";
    s << "<rect x=\"" << left << "\" y=\"" << ly << "\" width=\"" << lw << "\" height=\"12\" fill=\"url(#ramp)\" stroke=\"#999\"/>\n";
    s << "<text x=\"" << left << "\" y=\"" << ly + 28 << "\" font-size=\"11\">" << pct(1.0 / k, 0)
      << "% (chance)</text>\n";
    s << "<text x=\"" << left + lw << "\" y=\"" << ly + 28 << "\" font-size=\"11\" text-anchor=\"end\">100%</text>\n";
    s << "</svg>\n";
    return s.str();
}

}  // namespace

Runner add_eval_command(CLI::App& app) {
    struct Opts {
        std::vector<std::string> model, models, data;
        std::string split = "test", mode = "both", cache_dir, out_dir, rows_csv;
        int k = 2;
        double positive_noise = 0;
        bool json = false;
    };
    auto o = std::make_shared<Opts>();
    app.add_option("-m,--model", o->model, "Model .safetensors (default: the shipped default model)");
    app.add_option("--models", o->models, "Several models, comma-separated: the rows of the table")->delimiter(',');
    app.add_option("--data", o->data,
                   "Test sets, comma-separated: dataset roots of any layout (indexed once into --cache-dir) or "
                   "stem caches made by `cocola data index`")
        ->delimiter(',')
        ->required();
    app.add_option("--split", o->split, "Split to evaluate on")->capture_default_str();
    app.add_option("--k", o->k, "K: windows per batch, each row a K-way choice (chance 1/K)")
        ->check(CLI::Range(2, 4096))
        ->capture_default_str();
    app.add_option("--mode", o->mode, "Channels a 2-channel (hpss) model sees: both, harmonic or percussive")
        ->check(CLI::IsMember({"both", "harmonic", "percussive"}))
        ->capture_default_str();
    app.add_option("--positive-noise", o->positive_noise,
                   "Diagnostic, not the protocol: add Gaussian noise of this std to every positive, as training does "
                   "(0: none, the protocol); shows how much a model reads the noise floor")
        ->check(CLI::Range(0.0, 1.0));
    app.add_option("--cache-dir", o->cache_dir, "Where caches of dataset roots are kept (default: " +
                                                    data::default_cache_dir() + ")");
    app.add_option("-o,--out", o->out_dir, "Also write OUT/eval.md, OUT/eval.json and OUT/eval_heatmap.svg");
    app.add_flag("--json", o->json, "Print the JSON instead of the markdown table");
    app.add_option("--rows", o->rows_csv,
                   "Also write every row of every batch to this CSV (model, test set, batch, track, window start, "
                   "the two sub-mixes' stems, right or not, its own similarity and the best other one, the track "
                   "chosen instead): which pairs a model gets wrong, and by how much");
    app.footer(
        "Coherent sub-mix classification (the paper's Eq. 8, Table 2): the split's fixed evaluation windows\n"
        "(the reference's protocol: 5 s chunks at every 2.5 s, one random disjoint sub-mix pair each) are grouped\n"
        "into batches of K windows from distinct tracks; a row is right when its anchor is most similar to its own\n"
        "positive. Accuracy = mean over batches, with a 95% confidence interval (normal approximation).\n"
        "Examples:\n  cocola eval -m model.safetensors --data /data/musdb18hq\n"
        "  cocola eval --models a.safetensors,b.safetensors --data setA,setB -o report/");
    return [o]() {
        std::vector<std::string> paths = o->model;
        paths.insert(paths.end(), o->models.begin(), o->models.end());
        if (paths.empty()) {
            const std::string def = default_model_path();
            if (def.empty())
                throw Error("no model given and no default model found (models/cocola_default.safetensors or "
                            "$COCOLA_MODEL): pass -m MODEL.safetensors or --models M1,M2");
            paths.push_back(def);
        }
        for (const auto& p : paths)
            if (!fs::is_regular_file(p)) throw Error(p + ": no such model file");
        const auto mode = model::parse_mode(o->mode);
        eval::EvalOptions eo;
        eo.k = o->k;
        eo.split = o->split;
        eo.mode = mode;
        eo.positive_noise = o->positive_noise;

        // Index the test sets first: a bad --data fails before any model runs.
        const std::string cache_parent = o->cache_dir.empty() ? data::default_cache_dir() : o->cache_dir;
        std::vector<DataSet> sets(o->data.size());
        std::vector<std::string> set_names;
        for (size_t d = 0; d < o->data.size(); ++d) {
            auto& ds = sets[d];
            ds.input = o->data[d];
            if (!data::is_cache(ds.input) && fs::is_directory(ds.input) &&
                !data::is_cache(data::cache_dir_for(ds.input, cache_parent)))
                std::fprintf(stderr, "%s: indexing into %s (once; later runs reuse it)\n", ds.input.c_str(),
                             data::cache_dir_for(ds.input, cache_parent).c_str());
            std::unique_ptr<Progress> bar;
            ds.cache_dir = data::ensure_cache(ds.input, cache_parent, [&](size_t done, size_t total, const std::string& msg) {
                if (!bar) bar = std::make_unique<Progress>("index " + folder_name(ds.input), total);
                if (!msg.empty()) bar->message(msg);
                bar->update(done);
            });
            if (bar) bar->finish();
            ds.cache = std::make_unique<data::StemCache>(ds.cache_dir);
            const auto column = eval::describe_test_set(ds.input, *ds.cache, eo, o->rows_csv.empty() ? nullptr : &ds.protocol);
            set_names.push_back(column.name);
            ds.batches = column.batches;
            ds.items = column.items;
            ds.dropped = column.items_dropped;
            ds.same_track = column.same_track_batches;
            if (ds.same_track)
                std::fprintf(stderr, "cocola: warning: %s: %zu of %zu batches hold two windows of one track (too few "
                             "tracks in split '%s' for K = %d)\n", ds.input.c_str(), ds.same_track, ds.batches,
                             o->split.c_str(), o->k);
        }
        set_names = unique_names(set_names);
        for (size_t d = 0; d < sets.size(); ++d) sets[d].name = set_names[d];
        std::vector<std::string> model_names;
        for (const auto& p : paths) model_names.push_back(fsutil::stem(p));
        model_names = unique_names(model_names);

        size_t total = 0;
        for (const auto& ds : sets) total += ds.batches;
        total *= paths.size();
        Progress bar("eval", total);
        std::vector<std::vector<Cell>> cells(paths.size(), std::vector<Cell>(sets.size()));
        std::vector<model::Config> configs;
        size_t base = 0;
        for (size_t i = 0; i < paths.size(); ++i) {
            auto m = model::Model::load(paths[i]);
            configs.push_back(m.config());
            if (mode != model::EmbeddingMode::Both && m.config().in_channels() == 1)
                bar.message("cocola: warning: " + paths[i] + ": --mode " + o->mode +
                            " applies to 2-channel (hpss) models only; this mel model sees its one channel");
            for (size_t d = 0; d < sets.size(); ++d) {
                bar.set_suffix(model_names[i] + " / " + sets[d].name);
                const auto t0 = std::chrono::steady_clock::now();
                cells[i][d].r = eval::evaluate(m, *sets[d].cache, eo, [&](size_t done, size_t) { bar.update(base + done); });
                cells[i][d].seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
                base += sets[d].batches;
            }
        }
        bar.finish();

        std::ostringstream md;
        md << "## COCOLA coherent sub-mix classification accuracy (%)\n\n";
        md << "K = " << o->k << " (chance " << pct(1.0 / o->k, 1) << "%), split `" << o->split << "`, mode `" << o->mode
           << "`; mean over batches \u00b1 95% confidence interval.\n\n";
        if (o->positive_noise > 0)
            md << "Not the protocol: Gaussian noise of std " << o->positive_noise << " added to every positive.\n\n";
        md << "| model |";
        for (const auto& d : sets) md << " " << md_escape(d.name) << " |";
        md << "\n|---|";
        for (size_t d = 0; d < sets.size(); ++d) md << "---:|";
        md << "\n";
        for (size_t i = 0; i < paths.size(); ++i) {
            md << "| " << md_escape(model_names[i]) << " |";
            for (size_t d = 0; d < sets.size(); ++d)
                md << " " << pct(cells[i][d].r.accuracy) << " \u00b1 " << pct(cells[i][d].r.ci95) << " |";
            md << "\n";
        }
        md << "\n| test set | batches | items | same-track batches | source |\n|---|---:|---:|---:|---|\n";
        for (const auto& d : sets)
            md << "| " << md_escape(d.name) << " | " << d.batches << " | " << d.items << " | " << d.same_track << " | "
               << md_escape(d.input) << " |\n";

        std::vector<eval::TableModel> table_models;
        for (size_t i = 0; i < paths.size(); ++i) table_models.push_back({model_names[i], paths[i], configs[i]});
        std::vector<eval::TableDataset> table_sets;
        for (const auto& d : sets)
            table_sets.push_back({d.name, d.input, d.cache_dir, d.cache->layout(), d.batches, d.items, d.dropped, d.same_track});
        std::vector<std::vector<eval::TableCell>> table_cells(paths.size());
        for (size_t i = 0; i < paths.size(); ++i)
            for (const auto& c : cells[i]) table_cells[i].push_back({c.r, c.seconds});
        const nlohmann::ordered_json j = eval::accuracy_table_json(eo, table_models, table_sets, table_cells);

        if (!o->out_dir.empty()) {
            std::error_code ec;
            fs::create_directories(o->out_dir, ec);
            if (ec) throw Error(o->out_dir + ": cannot create output directory (" + ec.message() + ")");
            const fs::path out(o->out_dir);
            fsutil::write_file_atomically((out / "eval.md").string(), md.str());
            fsutil::write_file_atomically((out / "eval.json").string(), j.dump(2) + "\n");
            fsutil::write_file_atomically((out / "eval_heatmap.svg").string(),
                                          heatmap_svg(model_names, sets, cells, o->k, o->split));
            std::fprintf(stderr, "wrote %s, %s, %s\n", (out / "eval.md").c_str(), (out / "eval.json").c_str(),
                         (out / "eval_heatmap.svg").c_str());
        }
        if (!o->rows_csv.empty()) {
            std::ostringstream csv;
            csv << "model,dataset,batch,track,offset_s,anchor,positive,right,own_similarity,best_other_similarity,"
                   "chosen_track\n";
            for (size_t d = 0; d < sets.size(); ++d) {
                const auto& items = sets[d].protocol;
                const auto& cache = *sets[d].cache;
                const auto stems = [&](const data::EvalItem& it, const std::vector<int>& idx) {
                    std::string names;
                    for (int s : idx) names += (names.empty() ? "" : "+") + cache.track(it.track).stems.at(s).name;
                    return names;
                };
                for (size_t i = 0; i < paths.size(); ++i)
                    for (const auto& row : cells[i][d].r.rows) {
                        const auto& it = items.at(row.item);
                        char num[96];
                        std::snprintf(num, sizeof(num), "%.6g,%.6g", row.own, row.best_other);
                        csv << csv_field(model_names[i]) << "," << csv_field(sets[d].name) << "," << row.batch << ","
                            << csv_field(cache.track(it.track).id) << ","
                            << static_cast<double>(it.offset) / cache.sample_rate() << ","
                            << csv_field(stems(it, it.anchor)) << "," << csv_field(stems(it, it.positive)) << ","
                            << (row.right() ? 1 : 0) << "," << num << ","
                            << csv_field(cache.track(items.at(row.chosen).track).id) << "\n";
                    }
            }
            fsutil::write_file_atomically(o->rows_csv, csv.str());
            std::fprintf(stderr, "wrote %s\n", o->rows_csv.c_str());
        }
        if (o->json) std::cout << j.dump(2) << "\n";
        else std::cout << md.str();
        return 0;
    };
}

}  // namespace cocola::cli
