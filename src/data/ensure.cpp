// Commands that take "a dataset root or a cache" (train, eval) index a root once into a cache of their own, so
// users never run `cocola data index` by hand; the next run finds the cache and only re-checks file sizes and dates.
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "cocola/data.hpp"
#include "cocola/error.hpp"
#include "cocola/rng.hpp"

namespace cocola::data {

namespace fs = std::filesystem;

bool is_cache(const std::string& path) {
    std::error_code ec;
    return fs::is_regular_file(fs::path(path) / "index.json", ec);
}

std::string default_cache_dir() {
    const char* xdg = std::getenv("XDG_CACHE_HOME");
    if (xdg && *xdg) return (fs::path(xdg) / "cocola").string();
    const char* home = std::getenv("HOME");
    if (home && *home) return (fs::path(home) / ".cache" / "cocola").string();
    // No home (some containers): a folder under the system temp dir is still reused between runs.
    std::error_code ec;
    const fs::path tmp = fs::temp_directory_path(ec);
    return ((ec ? fs::path("/tmp") : tmp) / "cocola-cache").string();
}

std::string cache_dir_for(const std::string& root, const std::string& cache_parent) {
    std::error_code ec;
    fs::path abs = fs::weakly_canonical(fs::absolute(root), ec);
    if (ec) abs = fs::absolute(root).lexically_normal();
    std::string name = abs.filename().string();
    if (name.empty()) name = abs.parent_path().filename().string();  // "/data/set/" ends in an empty name
    std::string clean;
    for (char c : name) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                        c == '_' || c == '.';
        clean += ok ? c : '_';
    }
    if (clean.empty() || clean == "." || clean == "..") clean = "dataset";
    if (clean.size() > 48) clean.resize(48);
    // The hash of the full path keeps two roots with the same folder name (e.g. two "test" sets) apart.
    char hex[16];
    std::snprintf(hex, sizeof(hex), "%08llx",
                  static_cast<unsigned long long>(hash_name(abs.string()) & 0xffffffffull));
    return (fs::path(cache_parent) / (clean + "-" + hex)).string();
}

std::string ensure_cache(const std::string& root_or_cache, const std::string& cache_parent,
                         const CacheProgress& progress) {
    std::error_code ec;
    if (!fs::exists(root_or_cache, ec)) throw Error(root_or_cache + ": no such dataset or cache");
    if (is_cache(root_or_cache)) return root_or_cache;
    if (!fs::is_directory(root_or_cache, ec))
        throw Error(root_or_cache + ": not a directory (expected a dataset root or a stem cache)");
    const std::string parent = cache_parent.empty() ? default_cache_dir() : cache_parent;
    const Dataset ds = scan(root_or_cache, Layout::Auto);
    const std::string dir = cache_dir_for(root_or_cache, parent);
    // build_cache reuses every track whose sources are unchanged, so calling it on an existing cache only stats
    // the files and rewrites the index; a dataset that grew or changed is brought up to date.
    build_cache(ds, dir, CacheOptions{}, progress);
    return dir;
}

}  // namespace cocola::data
