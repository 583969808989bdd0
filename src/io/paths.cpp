#include "cocola/paths.hpp"

#include <cstdlib>
#include <filesystem>
#include <vector>

namespace cocola::paths {

std::string shipped_model(const std::string& name) {
    namespace fs = std::filesystem;
    const std::string file = name + ".safetensors";
    std::error_code ec;
    std::vector<fs::path> candidates;
    const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    if (!ec) {
        candidates.push_back(exe.parent_path() / "../share/cocola/models" / file);
        candidates.push_back(exe.parent_path() / "../models" / file);
    }
#ifdef COCOLA_INSTALL_PREFIX
    // An installed Python module runs inside python3: the executable says nothing about where cocola lives.
    candidates.push_back(fs::path(COCOLA_INSTALL_PREFIX) / "share/cocola/models" / file);
#endif
#ifdef COCOLA_SOURCE_DIR
    candidates.push_back(fs::path(COCOLA_SOURCE_DIR) / "models" / file);
#endif
    for (const auto& c : candidates)
        if (fs::is_regular_file(c, ec)) return fs::weakly_canonical(c, ec).string();
    return {};
}

std::string default_cocola_model() {
    if (const char* env = std::getenv("COCOLA_MODEL"); env && *env) return env;
    return shipped_model("cocola_default");
}

}  // namespace cocola::paths
