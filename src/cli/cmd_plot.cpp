#include <iostream>

#include "cli/commands.hpp"
#include "cocola/error.hpp"
#include "cocola/train.hpp"

namespace cocola::cli {

Runner add_plot_command(CLI::App& app) {
    struct Opts {
        std::vector<std::string> runs, labels;
        std::string out = "curves.svg", title = "COCOLA training";
    };
    auto o = std::make_shared<Opts>();
    app.add_option("RUN", o->runs, "Training run folders (their log.csv)")->required();
    app.add_option("--labels", o->labels, "Legend labels, comma-separated (default: the folder names)")->delimiter(',');
    app.add_option("-o,--out", o->out, "Output SVG")->capture_default_str();
    app.add_option("--title", o->title, "Chart title")->capture_default_str();
    app.footer("Example (the paper's Figure 4):\n"
               "  cocola plot runs/bilinear runs/cosine --labels bilinear,cosine -o docs/ablation.svg");
    return [o]() {
        train::write_comparison_svg(o->runs, o->labels, o->out, o->title);
        std::cout << o->out << "\n";
        return 0;
    };
}

}  // namespace cocola::cli
