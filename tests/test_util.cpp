#include "test_util.hpp"

#include "cocola/data.hpp"
#include "cocola/synth.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <iostream>
#include <memory>
#include <sys/wait.h>
#include <unistd.h>

namespace testutil {

const std::vector<std::string> kClips5s = {"00_triad", "01_drums", "02_bass", "03_triad_drums_mix",
                                           "04_white_noise_m20dbfs", "05_silence", "06_dc_offset_clipped",
                                           "07_log_chirp"};
const std::vector<std::string> kClipsAll = {"00_triad", "01_drums", "02_bass", "03_triad_drums_mix",
                                            "04_white_noise_m20dbfs", "05_silence", "06_dc_offset_clipped",
                                            "07_log_chirp", "x3s_triad_bass", "x12s_full_mix"};

namespace {
// The temporary directories this test process made. They go when it ends (songs, caches and runs reach
// hundreds of MB a test), unless a test failed or COCOLA_KEEP_TEST_DIRS is set: then they stay for a look.
struct TempDirs {
    std::vector<std::filesystem::path> paths;
    pid_t owner = ::getpid();
    ~TempDirs() {
        if (::getpid() != owner) return;  // a forked child leaves its parent's directories alone
        const bool keep = std::getenv("COCOLA_KEEP_TEST_DIRS") != nullptr || !::testing::UnitTest::GetInstance()->Passed();
        for (const auto& p : paths) {
            std::error_code ec;
            if (keep) std::cerr << "kept test directory " << p.string() << "\n";
            else std::filesystem::remove_all(p, ec);
        }
    }
};
TempDirs& temp_dirs() {
    static TempDirs dirs;
    return dirs;
}
}  // namespace

std::string temp_dir(const std::string& tag) {
    auto p = std::filesystem::temp_directory_path() / ("cocola_test_" + tag + "_" + std::to_string(::getpid()));
    std::filesystem::remove_all(p);
    std::filesystem::create_directories(p);
    auto& dirs = temp_dirs().paths;
    if (std::find(dirs.begin(), dirs.end(), p) == dirs.end()) dirs.push_back(p);
    return p.string();
}

RunResult run_cli(const std::string& args) { return run_shell(std::string(COCOLA_CLI) + " " + args + " 2>&1"); }

RunResult run_shell(const std::string& cmd) {
    std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(cmd.c_str(), "r"), pclose);
    RunResult r{-1, {}};
    std::array<char, 4096> buf;
    size_t n;
    while ((n = fread(buf.data(), 1, buf.size(), pipe.get())) > 0) r.out.append(buf.data(), n);
    int status = pclose(pipe.release());
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return r;
}

std::string procedural_song_cache(const std::string& tag, uint64_t seed) {
    const std::string root = temp_dir(tag);
    cocola::synth::SetOptions so;
    so.out_dir = root + "/songs";
    so.split = "auto";
    cocola::synth::write_procedural_set(seed, 10, 8.0, so);
    cocola::data::build_cache(cocola::data::scan(root + "/songs"), root + "/cache", cocola::data::CacheOptions{});
    return root + "/cache";
}

std::string read_all(const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::string log_without_time(const std::string& run_dir) {
    std::stringstream in(read_all(run_dir + "/log.csv")), out;
    std::string line;
    while (std::getline(in, line)) out << line.substr(0, line.rfind(',')) << "\n";
    return out.str();
}

}  // namespace testutil
