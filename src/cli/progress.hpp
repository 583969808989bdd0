// A progress bar on stderr for long commands: count, rate and ETA. Quiet when stderr is not a terminal
// unless the work is long, so logs of scripted runs stay readable.
#pragma once
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>

namespace cocola::cli {

class Progress {
   public:
    Progress(std::string label, size_t total) : label_(std::move(label)), total_(total), start_(now()) {
        tty_ = ::isatty(2);
    }
    void tick(size_t n = 1) {
        done_ += n;
        const double t = now();
        if (t - last_ < 0.2 && done_ < total_) return;
        last_ = t;
        draw(t);
    }
    // Sets the absolute count (for callbacks that report "done so far").
    void update(size_t done) {
        if (done > done_) tick(done - done_);
    }
    // Work already done when this process first reports (a resumed run's earlier steps): counted in the bar,
    // not in the rate, so steps/s and the ETA describe this process, not the time since the run began.
    void resume_from(size_t done) {
        done_ = base_ = done;
        start_ = now();
    }
    void set_total(size_t total) { total_ = total; }
    void set_suffix(std::string s) { suffix_ = std::move(s); }
    // Prints a line above the bar.
    void message(const std::string& line) {
        if (tty_ && drawn_) std::fprintf(stderr, "\r\033[K");
        std::fprintf(stderr, "%s\n", line.c_str());
        if (drawn_) draw(now());
    }
    void finish() {
        if (drawn_ && tty_) std::fprintf(stderr, "\n");
    }

   private:
    static double now() {
        return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
    }
    void draw(double t) {
        if (total_ < 2) return;
        const double el = t - start_, rate = (done_ - base_) / std::max(el, 1e-9);
        const double eta = rate > 0 ? (total_ - done_) / rate : 0;
        if (!tty_) {
            // Non-interactive: a line every 10% at most.
            size_t decile = done_ * 10 / total_;
            if (decile == last_decile_ && done_ < total_) return;
            last_decile_ = decile;
        }
        const int width = 30;
        const int fill = static_cast<int>(width * done_ / std::max<size_t>(total_, 1));
        std::string bar(fill, '#');
        bar.resize(width, '.');
        const std::string eta_text = rate > 0 ? std::to_string(static_cast<long long>(std::lround(eta))) + "s" : "-";
        std::fprintf(stderr, "%s%s [%s] %zu/%zu %.1f/s ETA %s %s%s", tty_ ? "\r\033[K" : "", label_.c_str(),
                     bar.c_str(), done_, total_, rate, eta_text.c_str(), suffix_.c_str(), tty_ ? "" : "\n");
        drawn_ = true;
    }
    std::string label_, suffix_;
    size_t total_, done_ = 0, base_ = 0, last_decile_ = static_cast<size_t>(-1);
    double start_, last_ = 0;
    bool tty_ = false, drawn_ = false;
};

}  // namespace cocola::cli
