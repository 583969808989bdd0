#include "cocola/fsutil.hpp"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <vector>
#include <signal.h>
#include <unistd.h>

#include <cerrno>

#include "cocola/error.hpp"

namespace cocola::fsutil {
namespace {

// A writer killed mid-write leaves TARGET.tmp.PID behind. A write to TARGET removes such files of the same target whose
// process is gone (a live one may be another run's write in progress). Each folder is listed once per process, so that
// writing thousands of files into one folder stays linear; files that merely look alike but belong to no target we
// write are never touched.
void remove_stale_temporaries(const std::filesystem::path& target) {
    static std::mutex mutex;
    static std::map<std::string, std::map<std::string, std::vector<std::filesystem::path>>> stale_by_folder;
    const std::filesystem::path folder = target.parent_path();
    std::vector<std::filesystem::path> stale;
    {
        std::lock_guard<std::mutex> lock(mutex);
        auto [entry, first_visit] = stale_by_folder.try_emplace(folder.string());
        auto& by_target = entry->second;
        if (first_visit) {
            std::error_code ec;
            for (std::filesystem::directory_iterator it(folder.empty() ? "." : folder, ec), end; !ec && it != end; it.increment(ec)) {
                const std::string name = it->path().filename().string();
                const size_t at = name.rfind(".tmp.");
                if (at == std::string::npos || at == 0 || at + 5 >= name.size()) continue;
                const std::string digits = name.substr(at + 5);
                if (digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos) continue;
                const pid_t pid = static_cast<pid_t>(std::stol(digits));
                if (pid > 0 && pid != ::getpid() && ::kill(pid, 0) == -1 && errno == ESRCH)
                    by_target[name.substr(0, at)].push_back(it->path());
            }
        }
        auto found = by_target.find(target.filename().string());
        if (found == by_target.end()) return;
        stale = std::move(found->second);
        by_target.erase(found);
    }
    for (const auto& p : stale) {
        std::error_code ignored;
        std::filesystem::remove(p, ignored);
    }
}

}  // namespace

void write_atomically(const std::string& path, const std::function<void(const std::string&)>& write) {
    namespace fs = std::filesystem;
    fs::path target(path);
    if (target.has_parent_path() && !fs::exists(target.parent_path())) {
        std::error_code ec;
        fs::create_directories(target.parent_path(), ec);
        if (ec) throw Error(path + ": cannot create directory " + target.parent_path().string() + ": " + ec.message());
    }
    remove_stale_temporaries(target);
    // The temp file sits next to the target so that rename() stays on one file system and is atomic.
    std::string tmp = path + ".tmp." + std::to_string(::getpid());
    try {
        write(tmp);
    } catch (...) {
        std::remove(tmp.c_str());
        throw;
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        std::remove(tmp.c_str());
        throw Error(path + ": cannot write (rename of temp file failed)");
    }
}

void write_file_atomically(const std::string& path, const std::string& bytes) {
    write_atomically(path, [&](const std::string& tmp) {
        std::ofstream out(tmp, std::ios::binary);
        if (!out) throw Error(path + ": cannot open for writing");
        out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
        out.flush();
        if (!out) throw Error(path + ": write failed (disk full?)");
    });
}

std::string stem(const std::string& path) { return std::filesystem::path(path).stem().string(); }

}  // namespace cocola::fsutil
