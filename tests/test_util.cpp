#include "test_util.hpp"

#include <array>
#include <cstdio>
#include <filesystem>
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

std::string temp_dir(const std::string& tag) {
    auto p = std::filesystem::temp_directory_path() / ("cocola_test_" + tag + "_" + std::to_string(::getpid()));
    std::filesystem::remove_all(p);
    std::filesystem::create_directories(p);
    return p.string();
}

RunResult run_cli(const std::string& args) {
    std::string cmd = std::string(COCOLA_CLI) + " " + args + " 2>&1";
    std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(cmd.c_str(), "r"), pclose);
    RunResult r{-1, {}};
    std::array<char, 4096> buf;
    size_t n;
    while ((n = fread(buf.data(), 1, buf.size(), pipe.get())) > 0) r.out.append(buf.data(), n);
    int status = pclose(pipe.release());
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return r;
}

}  // namespace testutil
