// Stem data for COCOLA: dataset layouts, the decoded stem cache, the contrastive pair sampler (the paper's section
// 3.1) and the reference's fixed evaluation protocol. Torch-free: batches are plain float buffers.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace cocola::data {

// ---------------------------------------------------------------- dataset layouts
enum class Layout { Auto, Musdb, Moises, Slakh, CocoChorales, Generic };
const char* layout_name(Layout l);             // "musdb18hq", "moisesdb", "slakh2100", "cocochorales", "generic"
Layout parse_layout(const std::string& name);  // also "auto"; throws cocola::Error on anything else

struct StemSource {
    std::string name;  // unique within the track
    std::string cls;   // instrument class ("bass", "Guitar", "violin", ...)
    std::string path;
};

struct TrackSource {
    std::string id;
    std::string split;  // train, valid, test (or the dataset's own extra splits, e.g. Slakh's omitted)
    std::string group;  // CocoChorales ensemble; empty elsewhere
    std::vector<StemSource> stems;
};

struct Dataset {
    Layout layout = Layout::Generic;
    std::string root;
    std::vector<TrackSource> tracks;  // sorted by (split, id)
    std::vector<std::string> warnings;
    size_t stems_not_rendered = 0;  // Slakh stems whose metadata says audio_rendered: false
};

// The deterministic 0.8/0.1/0.1 train/valid/test split by track id (MoisesDB, and sets without split folders).
std::string split_for(const std::string& track_id);

// Looks at the folder structure (and Slakh's metadata.yaml files) to tell the layouts apart.
Layout detect_layout(const std::string& root);
// Lists tracks and stems without decoding audio. Throws cocola::Error if `root` is missing or holds no tracks.
Dataset scan(const std::string& root, Layout layout = Layout::Auto);

// A track's stems decoded to mono at `sample_rate`, cut to the shortest stem. Unreadable, empty and all-silent
// stems are skipped with a warning; throws cocola::Error when fewer than 2 usable stems remain.
struct TrackAudio {
    std::vector<StemSource> stems;
    std::vector<std::vector<float>> audio;
    size_t length = 0;
    std::vector<std::string> warnings;
    size_t stems_skipped = 0;
};
TrackAudio load_track(const TrackSource& track, int sample_rate = 16000);

// ---------------------------------------------------------------- stem activity
// A stem is active in a window when at least `min_fraction` of the window's blocks have an RMS at or above
// `threshold_db` dBFS: a few stray clicks do not make a stem active, a part that plays a second of five does.
struct ActivityRule {
    double threshold_db = -50.0;
    double min_fraction = 0.2;
};

// ---------------------------------------------------------------- the stem cache
enum class SampleFormat { Int16, Float32 };

struct CacheOptions {
    SampleFormat format = SampleFormat::Int16;  // int16 is scaled per stem to its peak: no clipping, half the disk
    int block = 1600;                           // activity block (0.1 s); windows are placed on this grid
    int64_t window = 80000;                     // L, for the per-window activity summary in the index
    ActivityRule activity;
    int jobs = 0;                               // decoding threads; 0: all cores
};

struct CacheReport {
    size_t tracks_total = 0, tracks_indexed = 0, tracks_reused = 0, tracks_skipped = 0;
    size_t stems = 0, stems_skipped = 0;
    double hours = 0;
    std::vector<std::string> warnings;
};

using CacheProgress = std::function<void(size_t done, size_t total, const std::string& message)>;

// Decodes every track once into `dir` (tracks/<key>.pcm + .act + .json, then index.json). Tracks already cached
// with the same sources and options are reused, so an interrupted run resumes where it stopped.
CacheReport build_cache(const Dataset& ds, const std::string& dir, const CacheOptions& opt,
                        const CacheProgress& progress = {});

// True when `path` holds a cache made by build_cache (its index.json).
bool is_cache(const std::string& path);
// $XDG_CACHE_HOME/cocola, else ~/.cache/cocola: where commands keep the caches they make from dataset roots.
std::string default_cache_dir();
// The cache folder ensure_cache uses for a dataset root: <cache_parent>/<folder name>-<hash of the absolute path>.
std::string cache_dir_for(const std::string& root, const std::string& cache_parent);
// A cache for `root_or_cache`: returned as is when it already is one; otherwise it is scanned as a dataset root
// (layout detected) and indexed into cache_dir_for(root, cache_parent) (default_cache_dir() when empty), reusing
// what an earlier run indexed. Returns the cache directory. Throws cocola::Error when it is neither.
std::string ensure_cache(const std::string& root_or_cache, const std::string& cache_parent,
                         const CacheProgress& progress = {});

struct CachedStem {
    std::string name, cls;
    float scale = 1;  // int16 value 32767 means `scale`
};
struct CachedTrack {
    std::string id, split, group, key;
    int64_t length = 0;  // samples per stem
    int64_t blocks = 0;
    std::vector<CachedStem> stems;
};

// A read-only, memory-mapped view of a cache built by build_cache. Thread-safe for concurrent reads.
class StemCache {
   public:
    explicit StemCache(const std::string& dir);
    ~StemCache();
    StemCache(const StemCache&) = delete;
    StemCache& operator=(const StemCache&) = delete;

    const std::string& dir() const { return dir_; }
    const std::string& layout() const { return layout_; }
    const std::string& root() const { return root_; }
    SampleFormat format() const { return format_; }
    int sample_rate() const { return sample_rate_; }
    int block() const { return block_; }
    size_t tracks_skipped() const { return tracks_skipped_; }
    size_t stems_skipped() const { return stems_skipped_; }

    size_t size() const { return tracks_.size(); }
    const CachedTrack& track(size_t t) const { return tracks_.at(t); }
    std::vector<std::string> splits() const;
    std::vector<size_t> tracks_in(const std::string& split) const;  // "" or "all": every track

    // Writes (or adds, with accumulate) stem samples [offset, offset + n) as float; zeros beyond the end.
    void read(size_t t, size_t s, int64_t offset, int64_t n, float* out, bool accumulate = false) const;
    // Mean square of block b of stem s of track t (b counted in blocks of block()).
    float block_energy(size_t t, size_t s, int64_t b) const;
    bool active(size_t t, size_t s, int64_t offset, int64_t n, const ActivityRule& rule) const;
    std::vector<int> active_stems(size_t t, int64_t offset, int64_t n, const ActivityRule& rule) const;

   private:
    struct Map;
    std::string dir_, layout_, root_;
    SampleFormat format_ = SampleFormat::Int16;
    int sample_rate_ = 16000, block_ = 1600;
    size_t tracks_skipped_ = 0, stems_skipped_ = 0;
    std::vector<CachedTrack> tracks_;
    std::vector<std::unique_ptr<Map>> pcm_, act_;
};

// ---------------------------------------------------------------- contrastive pairs
// SubMix: two disjoint random sub-mixes (the paper). SingleStem: one stem each. SharedStem: two different
// sub-mixes that share one stem, a warm-up task for a curriculum (not coherence: the shared stem's own notes
// match), from which a SubMix run can start (--init).
enum class PairMode { SubMix, SingleStem, SharedStem };
const char* pair_mode_name(PairMode m);
PairMode parse_pair_mode(const std::string& name);  // throws cocola::Error

struct SamplerOptions {
    int batch = 32;             // K windows, from K distinct tracks
    int64_t window = 80000;     // L samples (5 s at 16 kHz)
    double max_overlap = 0.5;   // r: windows of one track overlap at most r * L within an epoch
    PairMode mode = PairMode::SubMix;
    std::string split = "train";
    uint64_t seed = 0;
    ActivityRule activity;
    // Swap anchor and positive of each pair with probability 1/2. The reference's draw makes anchors fuller than
    // positives (anchor size uniform in [1, n-1], positive in [1, n - anchor]); a loss that puts anchors among
    // the candidates (the symmetric one) can then tell the two kinds apart without matching anything.
    bool swap_roles = false;
    // Windows of one track in a batch (1: the paper, K distinct tracks). With N > 1 each batch holds K/N tracks
    // with N windows each that do not overlap one another. The other windows' positives are then hard negatives
    // for each anchor: the same song (key, tempo, instruments) at another moment, which only the moment's own
    // chords and beat phase tell apart. K must be a multiple of N.
    int windows_per_track = 1;
    // Training augmentation (empty: none): each stem's window is passed through this before it joins its side's
    // sub-mix, with a seed that depends only on (seed, epoch, batch, pair, stem), so a batch stays a pure function
    // of its index (exact --resume). E.g. production effects drawn anew for every window (cocola train
    // --stem-effects). Called on the thread that draws the batch.
    std::function<void(std::vector<float>& stem_window, uint64_t seed)> stem_transform;
};

struct PairBatch {
    int epoch = 0;
    size_t index = 0;
    int K = 0;
    int64_t L = 0;
    std::vector<float> anchor, positive;  // [K, L], row-major
    std::vector<uint32_t> track;          // [K] cache track index
    std::vector<int64_t> offset;          // [K] window start, samples
    std::vector<std::vector<int>> anchor_stems, positive_stems;  // [K] stem indices summed into each side
};

struct Window {
    uint32_t track = 0;
    int64_t offset = 0;
    std::vector<int> active;  // stems active in the window (at least 2)
};

class PairSampler {
   public:
    PairSampler(const StemCache& cache, SamplerOptions opt);
    const SamplerOptions& options() const { return opt_; }
    // The epoch's windows grouped into batches of K distinct tracks (computed once per epoch and cached for the
    // last few epochs; the reference stays valid while no more than 4 other epochs are planned).
    const std::vector<std::vector<Window>>& plan(int epoch) const;
    size_t batches_per_epoch(int epoch = 0) const { return plan(epoch).size(); }
    // Batch i of `epoch`: a pure function of (seed, epoch, i), safe to call from several threads.
    PairBatch batch(int epoch, size_t i) const;

   private:
    std::shared_ptr<const std::vector<std::vector<Window>>> plan_ptr(int epoch) const;
    const StemCache& cache_;
    SamplerOptions opt_;
    std::vector<size_t> tracks_;
    mutable std::mutex mu_;
    mutable std::map<int, std::shared_ptr<const std::vector<std::vector<Window>>>> plans_;
};

// Worker threads that assemble the batches of one epoch ahead of the consumer, delivered in order.
class Prefetcher {
   public:
    Prefetcher(const PairSampler& sampler, int epoch, int threads = 2, int depth = 8);
    ~Prefetcher();
    std::optional<PairBatch> next();  // empty at the end of the epoch; rethrows a worker's error

   private:
    void work();
    const PairSampler& sampler_;
    int epoch_;
    size_t total_, depth_;
    std::atomic<size_t> next_job_{0};
    size_t next_out_ = 0;
    std::mutex mu_;
    std::condition_variable cv_;
    std::map<size_t, PairBatch> ready_;
    std::exception_ptr error_;
    bool stop_ = false;
    std::vector<std::thread> workers_;
};

// Two disjoint non-empty subsets of `active` (at least 2 stems): random sizes in sub-mix mode, one stem each in
// single-stem mode. The draw the reference makes, restricted to active stems. In shared-stem mode both subsets
// hold one common stem plus disjoint random others, never the same set.
void draw_pair(std::vector<int> active, PairMode mode, uint64_t seed, std::vector<int>& anchor,
               std::vector<int>& positive);

// ---------------------------------------------------------------- the fixed evaluation protocol
constexpr uint64_t kProtocolSeed = 14703;  // the seed the reference's preprocessing uses

struct EvalItem {
    uint32_t track = 0;
    int64_t offset = 0;
    std::vector<int> anchor, positive;
};

// The reference's test set: each track chunked into windows of L from offset 0 and again from L/2 (so chunks start
// at every multiple of L/2), one random disjoint pair per chunk drawn from a seed fixed per (track id, offset), so
// the set is the same for every model and every run. Chunks with fewer than 2 active stems are left out; a last
// chunk shorter than L (but at least L/2) is zero-padded, as the reference pads.
std::vector<EvalItem> fixed_protocol(const StemCache& cache, const std::string& split, int64_t window = 80000,
                                     PairMode mode = PairMode::SubMix, uint64_t seed = kProtocolSeed,
                                     const ActivityRule& rule = {});
// Sums an item's sub-mixes into anchor[L] and positive[L].
void render_item(const StemCache& cache, const EvalItem& item, int64_t window, float* anchor, float* positive);
// The protocol as JSON (track ids, offsets, stem names) for reports and for checking that two runs agree.
std::string protocol_json(const StemCache& cache, const std::vector<EvalItem>& items, int64_t window);

}  // namespace cocola::data
