// The generation evaluation's pictures and page (generation_eval.hpp): a bar chart of COCOLA scores and the
// listening page, both plain text written without a plotting or templating dependency. Every user-given text
// (set names, prompts, paths) is escaped.
#include <algorithm>
#include <cmath>
#include <map>
#include <sstream>

#include "cocola/fsutil.hpp"
#include "cocola/generation_eval.hpp"
#include "cocola/train_core.hpp"

namespace cocola::componet {
namespace {

using train::svg_escape;  // escapes & < > " ' (HTML needs the same)

const char* colour(const std::string& generator) {
    static const std::map<std::string, const char*> c = {{"componet", "#1f77b4"}, {"msdm", "#ff7f0e"}, {"truth", "#2ca02c"},
                                                         {"resynth", "#9467bd"}, {"random", "#7f7f7f"}};
    const auto it = c.find(generator);
    return it == c.end() ? "#8c564b" : it->second;
}

std::string fixed(double x, int digits) {
    if (!std::isfinite(x)) return "-";
    std::ostringstream o;
    o.setf(std::ios::fixed);
    o.precision(digits);
    o << x;
    return o.str();
}

}  // namespace

void write_score_chart_svg(const std::string& path, const std::vector<GenerationRow>& rows, const std::string& title) {
    std::vector<std::pair<std::string, std::string>> groups;
    std::vector<std::string> gens;
    double lo = INFINITY, hi = -INFINITY;
    for (const auto& r : rows) {
        if (!std::isfinite(r.cocola)) continue;
        if (std::find(groups.begin(), groups.end(), std::make_pair(r.set, r.task)) == groups.end()) groups.push_back({r.set, r.task});
        if (std::find(gens.begin(), gens.end(), r.generator) == gens.end()) gens.push_back(r.generator);
        const double ci = std::isfinite(r.cocola_ci95) ? r.cocola_ci95 : 0;
        lo = std::min(lo, r.cocola - ci), hi = std::max(hi, r.cocola + ci);
    }
    const double bar = 22, gap = 26, left = 60, top = 50, height = 260;
    const double group_w = bar * static_cast<double>(std::max<size_t>(1, gens.size())) + gap;
    const double width = std::max(480.0, left + group_w * static_cast<double>(std::max<size_t>(1, groups.size())) + 20 + 120);
    if (!(hi > lo)) lo = 0, hi = 1;
    const double pad = 0.08 * (hi - lo);
    lo -= pad, hi += pad;
    auto y = [&](double v) { return top + height * (1 - (v - lo) / (hi - lo)); };
    std::ostringstream svg;
    svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << top + height + 60
        << "\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        << "<text x=\"" << left << "\" y=\"20\" font-size=\"14\">" << svg_escape(title) << "</text>\n"
        << "<text x=\"" << left << "\" y=\"36\" fill=\"#555\">mean COCOLA score with 95% intervals (the axis does not start at 0)</text>\n";
    for (int k = 0; k <= 4; ++k) {
        const double v = lo + (hi - lo) * k / 4;
        svg << "<line x1=\"" << left << "\" x2=\"" << width - 130 << "\" y1=\"" << y(v) << "\" y2=\"" << y(v)
            << "\" stroke=\"#ddd\"/><text x=\"" << left - 6 << "\" y=\"" << y(v) + 4 << "\" text-anchor=\"end\">" << fixed(v, 1) << "</text>\n";
    }
    for (size_t g = 0; g < groups.size(); ++g) {
        const double x0 = left + gap / 2 + group_w * static_cast<double>(g);
        for (size_t k = 0; k < gens.size(); ++k) {
            const auto it = std::find_if(rows.begin(), rows.end(), [&](const GenerationRow& r) {
                return r.set == groups[g].first && r.task == groups[g].second && r.generator == gens[k] && std::isfinite(r.cocola);
            });
            if (it == rows.end()) continue;
            const double x = x0 + bar * static_cast<double>(k);
            svg << "<rect x=\"" << x << "\" y=\"" << y(it->cocola) << "\" width=\"" << bar - 3 << "\" height=\""
                << std::max(0.0, top + height - y(it->cocola)) << "\" fill=\"" << colour(gens[k]) << "\"><title>"
                << svg_escape(gens[k]) << ": " << fixed(it->cocola, 2) << "</title></rect>\n";
            if (std::isfinite(it->cocola_ci95)) {
                const double cx = x + (bar - 3) / 2;
                svg << "<line x1=\"" << cx << "\" x2=\"" << cx << "\" y1=\"" << y(it->cocola - it->cocola_ci95) << "\" y2=\""
                    << y(it->cocola + it->cocola_ci95) << "\" stroke=\"black\"/>\n";
            }
        }
        svg << "<text x=\"" << x0 + bar * static_cast<double>(gens.size()) / 2 << "\" y=\"" << top + height + 18
            << "\" text-anchor=\"middle\">" << svg_escape(groups[g].first) << "</text><text x=\""
            << x0 + bar * static_cast<double>(gens.size()) / 2 << "\" y=\"" << top + height + 34
            << "\" text-anchor=\"middle\" fill=\"#555\">" << svg_escape(groups[g].second) << "</text>\n";
    }
    for (size_t k = 0; k < gens.size(); ++k)
        svg << "<rect x=\"" << width - 115 << "\" y=\"" << top + 18 * static_cast<double>(k) << "\" width=\"12\" height=\"12\" fill=\""
            << colour(gens[k]) << "\"/><text x=\"" << width - 98 << "\" y=\"" << top + 10 + 18 * static_cast<double>(k) << "\">"
            << svg_escape(gens[k]) << "</text>\n";
    svg << "</svg>\n";
    fsutil::write_file_atomically(path, svg.str());
}

void write_listening_page(const std::string& path, const std::string& title, const std::vector<GenerationRow>& rows,
                          const std::vector<DistanceRow>& distances, const std::string& chart, const std::vector<PageItem>& items,
                          const std::string& settings) {
    std::ostringstream h;
    h << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>" << svg_escape(title) << "</title>\n<style>\n"
      << "body{font-family:sans-serif;margin:20px;color:#222}table{border-collapse:collapse;margin:10px 0}"
         "td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}th{background:#f3f3f3}"
         "td.l,th.l{text-align:left}#items th.sort{cursor:pointer;text-decoration:underline}"
         "#items audio{width:190px;height:32px}#items img{width:260px;image-rendering:pixelated}.small{color:#666;font-size:90%}\n"
      << "</style></head><body>\n<h1>" << svg_escape(title) << "</h1>\n";
    h << "<h2>COCOLA scores</h2>\n<table><tr><th class=l>test set</th><th class=l>task</th><th class=l>generator</th><th>items</th>"
         "<th>COCOLA score</th><th>95% ±</th><th>second model</th><th>log-mel L1 to target (dB)</th></tr>\n";
    for (const auto& r : rows)
        h << "<tr><td class=l>" << svg_escape(r.set) << "</td><td class=l>" << svg_escape(r.task) << "</td><td class=l>"
          << svg_escape(r.generator) << "</td><td>" << r.items << "</td><td>" << fixed(r.cocola, 2) << "</td><td>"
          << fixed(r.cocola_ci95, 2) << "</td><td>" << fixed(r.cocola2, 2) << "</td><td>"
          << (r.generator == "truth" ? std::string("0") : fixed(r.log_mel_l1, 2)) << "</td></tr>\n";
    h << "</table>\n";
    if (!distances.empty()) {
        h << "<h2>Distances to the real targets (lower: closer)</h2>\n<table><tr><th class=l>test set</th><th class=l>task</th>"
             "<th class=l>generator</th><th class=l>embedding</th><th>items</th><th>FAD</th><th>FAD 95%</th><th>FAD-inf</th>"
             "<th>KAD</th><th>KAD 95%</th></tr>\n";
        for (const auto& d : distances)
            h << "<tr><td class=l>" << svg_escape(d.set) << "</td><td class=l>" << svg_escape(d.task) << "</td><td class=l>"
              << svg_escape(d.generator) << "</td><td class=l>" << svg_escape(d.space) << "</td><td>" << d.items << "</td><td>"
              << fixed(d.fad, 3) << "</td><td>" << fixed(d.fad_low, 3) << " .. " << fixed(d.fad_high, 3) << "</td><td>"
              << fixed(d.fad_inf, 3) << "</td><td>" << fixed(d.kad, 3) << "</td><td>" << fixed(d.kad_low, 3) << " .. "
              << fixed(d.kad_high, 3) << "</td></tr>\n";
        h << "</table>\n";
    }
    if (!chart.empty()) h << "<p><img src=\"" << svg_escape(chart) << "\" alt=\"COCOLA scores per generator\"></p>\n";
    std::vector<std::string> gens;
    for (const auto& it : items)
        for (const auto& g : it.generators)
            if (std::find(gens.begin(), gens.end(), g) == gens.end()) gens.push_back(g);
    h << "<h2>Items</h2>\n<p class=small>Each row: the input, the real target, each generator's output with its COCOLA "
         "score against the input; the picture stacks their log-mel spectrograms (input, target, then the outputs in "
         "column order). Click a score header to sort. <span id=\"load-status\">audio loading</span></p>\n"
         "<table id=\"items\"><thead><tr><th class=l>item</th><th class=l>prompt</th><th>input</th><th>target</th>";
    for (const auto& g : gens) h << "<th class=\"sort\" data-gen=\"" << svg_escape(g) << "\">" << svg_escape(g) << "</th>";
    h << "<th>spectrograms</th></tr></thead><tbody>\n";
    auto player = [](const std::string& src) {
        return src.empty() ? std::string("-") : "<audio controls preload=\"metadata\" src=\"" + svg_escape(src) + "\"></audio>";
    };
    for (const auto& it : items) {
        h << "<tr><td class=l>" << svg_escape(it.set) << " " << svg_escape(it.task) << " " << it.index << "</td><td class=l>"
          << svg_escape(it.prompt) << "</td><td>" << player(it.input_audio) << "</td><td>" << player(it.target_audio) << "</td>";
        for (const auto& g : gens) {
            const auto k = static_cast<size_t>(std::find(it.generators.begin(), it.generators.end(), g) - it.generators.begin());
            if (k >= it.generators.size()) {
                h << "<td data-score=\"NaN\">-</td>";
                continue;
            }
            h << "<td data-score=\"" << (std::isfinite(it.scores[k]) ? fixed(it.scores[k], 4) : "NaN") << "\">"
              << player(it.outputs[k]) << "<br>" << fixed(it.scores[k], 2) << "</td>";
        }
        h << "<td>" << (it.spectrogram.empty() ? std::string("-") : "<img loading=\"lazy\" src=\"" + svg_escape(it.spectrogram) + "\" alt=\"\">")
          << "</td></tr>\n";
    }
    h << "</tbody></table>\n<p class=small>Settings: " << svg_escape(settings) << "</p>\n";
    h << R"(<script>
(function () {
  var table = document.getElementById('items');
  var heads = table.querySelectorAll('th.sort');
  heads.forEach(function (th) {
    var down = true;
    th.addEventListener('click', function () {
      var col = Array.prototype.indexOf.call(th.parentNode.children, th);
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = parseFloat(a.cells[col].dataset.score), y = parseFloat(b.cells[col].dataset.score);
        if (isNaN(x)) return 1;
        if (isNaN(y)) return -1;
        return down ? y - x : x - y;
      });
      down = !down;
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
  var players = document.querySelectorAll('audio');
  var loaded = 0, failed = 0, status = document.getElementById('load-status');
  function update() {
    if (loaded + failed === players.length)
      status.textContent = 'audio loaded: ' + loaded + ' of ' + players.length + (failed ? ' (' + failed + ' failed)' : '');
  }
  players.forEach(function (a) {
    if (a.readyState >= 1) { loaded++; return; }
    a.addEventListener('loadedmetadata', function () { loaded++; update(); });
    a.addEventListener('error', function () { failed++; update(); });
  });
  update();
})();
</script>
</body></html>
)";
    fsutil::write_file_atomically(path, h.str());
}

}  // namespace cocola::componet
