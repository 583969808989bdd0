// The stem cache: every track decoded once to 16 kHz mono and stored stem after stem in one file, memory-mapped
// at training time so that a random window is a memcpy, plus per-block energies for the activity test.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "cocola/audio.hpp"
#include "cocola/data.hpp"
#include "cocola/error.hpp"
#include "cocola/fsutil.hpp"
#include "cocola/rng.hpp"

namespace cocola::data {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr int kCacheVersion = 1;

std::string track_key(const TrackSource& t) {
    char buf[24];
    std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(hash_name(t.split + "/" + t.id)));
    return buf;
}

json options_json(const CacheOptions& o) {
    return {{"format", o.format == SampleFormat::Int16 ? "int16" : "float32"},
            {"block", o.block},
            {"window", o.window},
            {"sample_rate", audio::kSampleRate},
            {"activity", {{"threshold_db", o.activity.threshold_db}, {"min_fraction", o.activity.min_fraction}}}};
}

// What the cached track was made from: any change to a source file or to the options makes it stale.
std::string fingerprint(const TrackSource& t, const CacheOptions& o) {
    json src = json::array();
    for (const auto& s : t.stems) {
        std::error_code ec;
        const auto size = fs::file_size(s.path, ec);
        const auto mtime = fs::last_write_time(s.path, ec).time_since_epoch().count();
        src.push_back({s.name, s.cls, s.path, ec ? -1 : static_cast<long long>(size), static_cast<long long>(mtime)});
    }
    return json{{"version", kCacheVersion}, {"options", options_json(o)}, {"group", t.group}, {"sources", src}}.dump();
}

void write_binary(const std::string& path, const void* data, size_t bytes) {
    fsutil::write_atomically(path, [&](const std::string& tmp) {
        std::ofstream out(tmp, std::ios::binary);
        if (!out) throw Error(path + ": cannot open for writing");
        out.write(static_cast<const char*>(data), static_cast<std::streamsize>(bytes));
        out.flush();
        if (!out) throw Error(path + ": write failed (disk full?)");
    });
}

float db(double ms) { return ms > 0 ? static_cast<float>(10.0 * std::log10(ms)) : -200.0f; }

// Decodes, measures and stores one track; returns its index record.
json index_track(const TrackSource& t, const std::string& dir, const CacheOptions& o, const std::string& key,
                 const std::string& fp, CacheReport& local) {
    json rec = {{"id", t.id}, {"split", t.split}, {"group", t.group}, {"key", key}, {"fingerprint", fp}};
    TrackAudio ta;
    try {
        ta = load_track(t, audio::kSampleRate);
    } catch (const Error& e) {
        rec["skipped"] = e.what();
        // The stems that failed are in the error's own message; count them all as unusable.
        rec["stems_skipped"] = t.stems.size();
        return rec;
    }
    const int64_t n = static_cast<int64_t>(ta.length);
    const int64_t blocks = (n + o.block - 1) / o.block;
    const size_t S = ta.audio.size();
    std::vector<float> act(S * blocks, 0.0f);
    json stems = json::array();
    std::vector<int16_t> q;
    std::vector<float> f;
    if (o.format == SampleFormat::Int16) q.resize(S * n);
    else f.resize(S * n);
    const double thr = std::pow(10.0, o.activity.threshold_db / 10.0);
    for (size_t s = 0; s < S; ++s) {
        const auto& x = ta.audio[s];
        float peak = 0;
        double total = 0;
        int64_t active_blocks = 0;
        for (int64_t b = 0; b < blocks; ++b) {
            const int64_t a = b * o.block, e = std::min(n, a + o.block);
            double ms = 0;
            for (int64_t i = a; i < e; ++i) {
                ms += static_cast<double>(x[i]) * x[i];
                peak = std::max(peak, std::fabs(x[i]));
            }
            total += ms;
            ms /= static_cast<double>(o.block);  // a short last block counts its missing part as silence
            act[s * blocks + b] = static_cast<float>(ms);
            active_blocks += ms >= thr;
        }
        // int16 scaled to the stem's own peak: quiet stems keep their resolution and nothing clips.
        const float scale = peak > 0 ? peak : 1.0f;
        if (o.format == SampleFormat::Int16) {
            const float k = 32767.0f / scale;
            for (int64_t i = 0; i < n; ++i) q[s * n + i] = static_cast<int16_t>(std::lrintf(x[i] * k));
        } else {
            std::copy(x.begin(), x.end(), f.begin() + s * n);
        }
        stems.push_back({{"name", ta.stems[s].name},
                         {"class", ta.stems[s].cls},
                         {"scale", o.format == SampleFormat::Int16 ? scale : 1.0f},
                         {"peak", peak},
                         {"rms_db", db(total / std::max<int64_t>(n, 1))},
                         {"active_fraction", blocks ? static_cast<double>(active_blocks) / blocks : 0.0}});
    }
    const fs::path base = fs::path(dir) / "tracks" / key;
    if (o.format == SampleFormat::Int16) write_binary(base.string() + ".pcm", q.data(), q.size() * sizeof(int16_t));
    else write_binary(base.string() + ".pcm", f.data(), f.size() * sizeof(float));
    write_binary(base.string() + ".act", act.data(), act.size() * sizeof(float));

    // Per-window activity on the evaluation grid (hop L/2), for `data info` and quick inspection.
    json windows = json::array();
    const int64_t hop = o.window / 2;
    for (int64_t off = 0; off + o.window <= n || (off == 0 && n > 0); off += hop) {
        json a = json::array();
        const int64_t b0 = off / o.block, nb = (o.window + o.block - 1) / o.block;
        for (size_t s = 0; s < S; ++s) {
            int64_t c = 0;
            for (int64_t b = b0; b < std::min(blocks, b0 + nb); ++b) c += act[s * blocks + b] >= thr;
            if (c >= o.activity.min_fraction * nb) a.push_back(s);
        }
        windows.push_back(a);
        if (off + o.window > n) break;
    }
    rec["length"] = n;
    rec["blocks"] = blocks;
    rec["stems"] = stems;
    rec["stems_skipped"] = ta.stems_skipped;
    rec["warnings"] = ta.warnings;
    rec["windows"] = {{"hop", hop}, {"length", o.window}, {"active", windows}};
    local.stems += S;
    local.hours += n / static_cast<double>(audio::kSampleRate) / 3600.0;
    return rec;
}

}  // namespace

CacheReport build_cache(const Dataset& ds, const std::string& dir, const CacheOptions& opt,
                        const CacheProgress& progress) {
    if (opt.block <= 0 || opt.window <= 0) throw Error("data index: block and window must be positive");
    std::error_code ec;
    fs::create_directories(fs::path(dir) / "tracks", ec);
    if (ec) throw Error(dir + ": cannot create cache directory (" + ec.message() + ")");
    // One writer per cache: a second run (of `data index`, or a train/eval indexing the same root) waits for the first
    // and then reuses its tracks. The lock is released by the kernel if the holder dies.
    const std::string lock_path = (fs::path(dir) / ".lock").string();
    const int lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock_fd < 0) throw Error(lock_path + ": cannot open the cache's lock file");
    struct LockGuard {
        int fd;
        ~LockGuard() { ::close(fd); }
    } lock_guard{lock_fd};
    if (::flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno != EWOULDBLOCK) throw Error(lock_path + ": cannot lock the cache");
        if (progress) progress(0, ds.tracks.size(), dir + ": another process is indexing into this cache; waiting for it");
        if (::flock(lock_fd, LOCK_EX) != 0) throw Error(lock_path + ": cannot lock the cache");
    }
    // A cache holds one dataset: indexing another root into it would leave an index of one and tracks of both.
    if (is_cache(dir)) {
        std::string held;
        try {
            std::ifstream in(fs::path(dir) / "index.json");
            held = json::parse(in).value("root", "");
        } catch (const std::exception&) {
            // an unreadable index is rebuilt
        }
        // Compared as cache_dir_for names folders (weakly canonical), so "set/" and "set" are one dataset.
        const auto canonical = [](const std::string& r) {
            std::error_code ec;
            const fs::path p = fs::weakly_canonical(fs::absolute(r), ec);
            return ec ? fs::absolute(r).lexically_normal() : p;
        };
        if (!held.empty() && canonical(held) != canonical(ds.root))
            throw Error(dir + ": this cache holds the dataset " + held + ", not " + ds.root +
                        "; index into another folder (or delete this one)");
    }
    const size_t N = ds.tracks.size();
    std::vector<json> records(N);
    CacheReport rep;
    rep.tracks_total = N;
    rep.warnings = ds.warnings;
    std::atomic<size_t> next{0};
    std::mutex mu;
    size_t done = 0;
    std::exception_ptr fatal;
    int jobs = opt.jobs > 0 ? opt.jobs : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    jobs = static_cast<int>(std::min<size_t>(jobs, std::max<size_t>(N, 1)));
    auto worker = [&] {
        try {
            while (true) {
                const size_t i = next++;
                if (i >= N) break;
                const auto& t = ds.tracks[i];
                const std::string key = track_key(t);
                const std::string fp = fingerprint(t, opt);
                const fs::path rec_path = fs::path(dir) / "tracks" / (key + ".json");
                json rec;
                bool reused = false;
                // Resume: a record is written after its audio, so an existing record with the same fingerprint
                // means the track is complete.
                if (fs::exists(rec_path)) {
                    try {
                        std::ifstream in(rec_path);
                        json old = json::parse(in);
                        if (old.value("fingerprint", "") == fp) {
                            rec = std::move(old);
                            reused = true;
                        }
                    } catch (const std::exception&) {
                        // unreadable record: index the track again
                    }
                }
                CacheReport local;
                if (!reused) {
                    rec = index_track(t, dir, opt, key, fp, local);
                    fsutil::write_file_atomically(rec_path.string(), rec.dump() + "\n");
                } else if (!rec.contains("skipped")) {
                    local.stems += rec["stems"].size();
                    local.hours += rec["length"].get<int64_t>() / static_cast<double>(audio::kSampleRate) / 3600.0;
                }
                std::string msg;
                std::lock_guard<std::mutex> lk(mu);
                records[i] = rec;
                if (rec.contains("skipped")) {
                    ++rep.tracks_skipped;
                    msg = "cocola: warning: " + rec["skipped"].get<std::string>();
                    rep.warnings.push_back(rec["skipped"].get<std::string>());
                } else if (reused) {
                    ++rep.tracks_reused;
                } else {
                    ++rep.tracks_indexed;
                }
                rep.stems_skipped += rec.value("stems_skipped", 0);
                if (rec.contains("warnings") && !reused)
                    for (const auto& w : rec["warnings"]) {
                        rep.warnings.push_back(w.get<std::string>());
                        if (!msg.empty()) msg += "\n";
                        msg += "cocola: warning: " + w.get<std::string>();
                    }
                rep.stems += local.stems;
                rep.hours += local.hours;
                ++done;
                if (progress) progress(done, N, msg);
            }
        } catch (...) {
            std::lock_guard<std::mutex> lk(mu);
            if (!fatal) fatal = std::current_exception();
            next = N;
        }
    };
    std::vector<std::thread> threads;
    for (int j = 0; j < jobs; ++j) threads.emplace_back(worker);
    for (auto& th : threads) th.join();
    if (fatal) std::rethrow_exception(fatal);

    json tracks = json::array(), skipped = json::array();
    for (auto& r : records) {
        if (r.contains("skipped")) {
            skipped.push_back({{"id", r["id"]}, {"split", r["split"]}, {"reason", r["skipped"]}});
            continue;
        }
        r.erase("fingerprint");
        r.erase("warnings");
        tracks.push_back(std::move(r));
    }
    if (tracks.empty()) throw Error(ds.root + ": no track has 2 usable stems; nothing to cache");
    json index = {{"cocola_stem_cache", kCacheVersion},
                  {"layout", layout_name(ds.layout)},
                  {"root", ds.root},
                  {"options", options_json(opt)},
                  {"hours", rep.hours},
                  {"stems_skipped", rep.stems_skipped},
                  {"stems_not_rendered", ds.stems_not_rendered},
                  {"tracks_skipped", skipped},
                  {"tracks", tracks}};
    fsutil::write_file_atomically((fs::path(dir) / "index.json").string(), index.dump() + "\n");
    return rep;
}

// ---------------------------------------------------------------- StemCache
struct StemCache::Map {
    void* p = MAP_FAILED;
    size_t n = 0;
    Map(const std::string& path, size_t expect) {
        const int fd = ::open(path.c_str(), O_RDONLY);
        if (fd < 0) throw Error(path + ": missing cache file (run cocola data index again)");
        struct stat st {};
        ::fstat(fd, &st);
        n = static_cast<size_t>(st.st_size);
        if (n != expect) {
            ::close(fd);
            throw Error(path + ": cache file has " + std::to_string(n) + " bytes, expected " + std::to_string(expect) +
                        " (truncated? run cocola data index again)");
        }
        p = n ? ::mmap(nullptr, n, PROT_READ, MAP_SHARED, fd, 0) : nullptr;
        ::close(fd);
        if (p == MAP_FAILED) throw Error(path + ": cannot memory-map");
        // Training reads random windows: read-ahead of whole files would waste I/O.
        if (n) ::madvise(p, n, MADV_RANDOM);
    }
    ~Map() {
        if (p && p != MAP_FAILED) ::munmap(p, n);
    }
};

StemCache::StemCache(const std::string& dir) : dir_(dir) {
    const fs::path ip = fs::path(dir) / "index.json";
    std::ifstream in(ip);
    if (!in) throw Error(ip.string() + ": no stem cache here (make one with cocola data index ROOT -o " + dir + ")");
    json j;
    try {
        j = json::parse(in);
    } catch (const std::exception& e) {
        throw Error(ip.string() + ": unreadable index (" + e.what() + ")");
    }
    try {
        if (j.value("cocola_stem_cache", 0) != kCacheVersion)
            throw Error(ip.string() + ": not a cocola stem cache of version " + std::to_string(kCacheVersion));
        layout_ = j.at("layout").get<std::string>();
        root_ = j.at("root").get<std::string>();
        const auto& o = j.at("options");
        format_ = o.at("format").get<std::string>() == "int16" ? SampleFormat::Int16 : SampleFormat::Float32;
        sample_rate_ = o.at("sample_rate").get<int>();
        block_ = o.at("block").get<int>();
        tracks_skipped_ = j.at("tracks_skipped").size();
        stems_skipped_ = j.value("stems_skipped", 0);
        const size_t bytes = format_ == SampleFormat::Int16 ? 2 : 4;
        for (const auto& r : j.at("tracks")) {
            CachedTrack t;
            t.id = r.at("id").get<std::string>();
            t.split = r.at("split").get<std::string>();
            t.group = r.value("group", "");
            t.key = r.at("key").get<std::string>();
            t.length = r.at("length").get<int64_t>();
            t.blocks = r.at("blocks").get<int64_t>();
            for (const auto& s : r.at("stems"))
                t.stems.push_back({s.at("name").get<std::string>(), s.at("class").get<std::string>(),
                                   s.at("scale").get<float>()});
            const std::string base = (fs::path(dir) / "tracks" / t.key).string();
            pcm_.push_back(std::make_unique<Map>(base + ".pcm", t.stems.size() * t.length * bytes));
            act_.push_back(std::make_unique<Map>(base + ".act", t.stems.size() * t.blocks * sizeof(float)));
            tracks_.push_back(std::move(t));
        }
    } catch (const nlohmann::json::exception& e) {
        throw Error(ip.string() + ": malformed index (" + e.what() + ")");
    }
}

StemCache::~StemCache() = default;

std::vector<std::string> StemCache::splits() const {
    std::set<std::string> s;
    for (const auto& t : tracks_) s.insert(t.split);
    return {s.begin(), s.end()};
}

std::vector<size_t> StemCache::tracks_in(const std::string& split) const {
    std::vector<size_t> out;
    for (size_t i = 0; i < tracks_.size(); ++i)
        if (split.empty() || split == "all" || tracks_[i].split == split) out.push_back(i);
    return out;
}

void StemCache::read(size_t t, size_t s, int64_t offset, int64_t n, float* out, bool accumulate) const {
    const CachedTrack& tr = tracks_.at(t);
    if (s >= tr.stems.size()) throw Error(dir_ + ": stem index out of range");
    const int64_t a = std::max<int64_t>(0, offset), e = std::min(tr.length, offset + n);
    if (!accumulate) {
        // Only the parts outside the track need zeros; the rest is overwritten below.
        for (int64_t i = 0; i < std::min(n, a - offset); ++i) out[i] = 0.0f;
        for (int64_t i = std::max<int64_t>(0, e - offset); i < n; ++i) out[i] = 0.0f;
    }
    if (e <= a) {
        if (!accumulate) std::fill(out, out + n, 0.0f);
        return;
    }
    float* dst = out + (a - offset);
    const int64_t len = e - a;
    if (format_ == SampleFormat::Int16) {
        const int16_t* src = static_cast<const int16_t*>(pcm_[t]->p) + s * tr.length + a;
        const float k = tr.stems[s].scale / 32767.0f;
        if (accumulate)
            for (int64_t i = 0; i < len; ++i) dst[i] += src[i] * k;
        else
            for (int64_t i = 0; i < len; ++i) dst[i] = src[i] * k;
    } else {
        const float* src = static_cast<const float*>(pcm_[t]->p) + s * tr.length + a;
        if (accumulate)
            for (int64_t i = 0; i < len; ++i) dst[i] += src[i];
        else
            std::memcpy(dst, src, len * sizeof(float));
    }
}

float StemCache::block_energy(size_t t, size_t s, int64_t b) const {
    const CachedTrack& tr = tracks_.at(t);
    if (b < 0 || b >= tr.blocks) return 0.0f;
    return static_cast<const float*>(act_[t]->p)[s * tr.blocks + b];
}

bool StemCache::active(size_t t, size_t s, int64_t offset, int64_t n, const ActivityRule& rule) const {
    const float thr = static_cast<float>(std::pow(10.0, rule.threshold_db / 10.0));
    const int64_t b0 = offset / block_, nb = std::max<int64_t>(1, (n + block_ - 1) / block_);
    int64_t c = 0;
    for (int64_t b = b0; b < b0 + nb; ++b) c += block_energy(t, s, b) >= thr;
    return c >= rule.min_fraction * nb && c > 0;
}

std::vector<int> StemCache::active_stems(size_t t, int64_t offset, int64_t n, const ActivityRule& rule) const {
    std::vector<int> out;
    for (size_t s = 0; s < tracks_.at(t).stems.size(); ++s)
        if (active(t, s, offset, n, rule)) out.push_back(static_cast<int>(s));
    return out;
}

}  // namespace cocola::data
