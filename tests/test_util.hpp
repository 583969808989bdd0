#pragma once
#include <cstdlib>
#include <cstdint>
#include <string>
#include <vector>

#include "cocola/npy.hpp"

namespace testutil {

inline std::string data(const std::string& rel) { return std::string(COCOLA_TEST_DATA) + "/" + rel; }
inline std::string golden(const std::string& rel) { return data("golden/" + rel); }

// A fresh, empty temporary directory for one test, removed when the test process ends (kept if a test failed,
// or with COCOLA_KEEP_TEST_DIRS set).
std::string temp_dir(const std::string& tag);

// A stem cache of 10 procedural songs of 8 s (split "auto"), rendered with `seed` once per test process.
std::string procedural_song_cache(const std::string& tag, uint64_t seed);

// The whole text of a file ("" when it cannot be read).
std::string read_all(const std::string& path);
// A run's log.csv without its wall-time column (the last): what must equal between a resumed and an
// uninterrupted run.
std::string log_without_time(const std::string& run_dir);

struct RunResult {
    int code;
    std::string out;  // stdout and stderr together
};
// Runs the cocola CLI with the given argument string (shell-quoted by the caller).
RunResult run_cli(const std::string& args);
// Runs a shell command line; its stdout (and whatever it redirects) is returned.
RunResult run_shell(const std::string& command);

extern const std::vector<std::string> kClips5s;  // the 8 golden 5 s clips, in row order
extern const std::vector<std::string> kClipsAll; // + the 3 s and 12 s clips

}  // namespace testutil
