// Dataset layouts, the stem cache, the pair sampler and the fixed evaluation protocol, on small trees made here.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sndfile.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <iterator>
#include <map>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "cocola/audio.hpp"
#include "cocola/data.hpp"
#include "cocola/error.hpp"
#include "cocola/rng.hpp"
#include "test_util.hpp"

namespace fs = std::filesystem;
using namespace cocola;

namespace {

// A stem: a tone that plays only in [on, off) seconds, at `amp`.
std::vector<float> tone(double seconds, double hz, double on, double off, float amp = 0.3f, int sr = 16000) {
    std::vector<float> x(static_cast<size_t>(seconds * sr), 0.0f);
    for (size_t i = 0; i < x.size(); ++i) {
        const double t = double(i) / sr;
        if (t >= on && t < off) x[i] = amp * static_cast<float>(std::sin(2 * M_PI * hz * t));
    }
    return x;
}

void wav(const fs::path& p, const std::vector<float>& x, int sr = 16000) {
    fs::create_directories(p.parent_path());
    audio::write_wav(p.string(), x, sr);
}

void flac(const fs::path& p, const std::vector<float>& x, int sr) {
    fs::create_directories(p.parent_path());
    SF_INFO info{};
    info.samplerate = sr;
    info.channels = 1;
    info.format = SF_FORMAT_FLAC | SF_FORMAT_PCM_16;
    SNDFILE* f = sf_open(p.string().c_str(), SFM_WRITE, &info);
    ASSERT_NE(f, nullptr) << sf_strerror(nullptr);
    sf_writef_float(f, x.data(), x.size());
    sf_close(f);
}

void text(const fs::path& p, const std::string& s) {
    fs::create_directories(p.parent_path());
    std::ofstream(p) << s;
}

const data::TrackSource* find(const data::Dataset& ds, const std::string& id) {
    for (const auto& t : ds.tracks)
        if (t.id == id) return &t;
    return nullptr;
}

std::vector<std::string> names(const data::TrackSource& t) {
    std::vector<std::string> n;
    for (const auto& s : t.stems) n.push_back(s.name);
    return n;
}

// A generic set for sampler tests: `tracks` tracks of 4 stems whose activity varies over time.
std::string make_set(const std::string& tag, int tracks, double seconds) {
    const std::string root = testutil::temp_dir(tag);
    Rng rng(tracks);
    for (int t = 0; t < tracks; ++t) {
        const fs::path td = fs::path(root) / "train" / ("t" + std::to_string(100 + t));
        wav(td / "drums.wav", tone(seconds, 90 + t, 0, seconds));
        wav(td / "bass.wav", tone(seconds, 55 + t, 0, seconds * 0.6));
        wav(td / "keys.wav", tone(seconds, 330 + t, seconds * 0.3, seconds));
        wav(td / "lead.wav", tone(seconds, 660 + t, rng.uniform(0, seconds / 2), seconds, 0.2f));
    }
    return root;
}

}  // namespace

// ---------------------------------------------------------------- layouts
TEST(Layouts, Musdb) {
    const fs::path r = testutil::temp_dir("musdb");
    for (const char* split : {"train", "test"})
        for (const char* tr : {"A - One", "B - Two"}) {
            for (const char* s : {"bass", "drums", "other", "vocals", "mixture"})
                wav(r / split / tr / (std::string(s) + ".wav"), tone(1, 220, 0, 1));
        }
    const auto ds = data::scan(r.string());
    EXPECT_EQ(ds.layout, data::Layout::Musdb);
    ASSERT_EQ(ds.tracks.size(), 4u);
    EXPECT_EQ(ds.tracks[0].split, "test");
    EXPECT_EQ(names(ds.tracks[0]), (std::vector<std::string>{"bass", "drums", "other", "vocals"}));
}

TEST(Layouts, MoisesWithDeterministicSplit) {
    const fs::path r = fs::path(testutil::temp_dir("moises")) / "moisesdb_v0.1";
    for (int i = 0; i < 6; ++i) {
        const std::string id = "0a1b2c3d-000" + std::to_string(i);
        text(r / id / "data.json", "{\"song\": \"x\"}");
        wav(r / id / "bass" / "b1.wav", tone(1, 60, 0, 1));
        wav(r / id / "guitar" / "g1.wav", tone(1, 300, 0, 1));
        wav(r / id / "guitar" / "g2.wav", tone(1, 400, 0, 1));
    }
    const auto ds = data::scan(r.parent_path().string());
    EXPECT_EQ(ds.layout, data::Layout::Moises);
    ASSERT_EQ(ds.tracks.size(), 6u);
    const auto& t = ds.tracks[0];
    EXPECT_EQ(t.split, data::split_for(t.id));
    EXPECT_EQ(names(t), (std::vector<std::string>{"bass/b1", "guitar/g1", "guitar/g2"}));
    EXPECT_EQ(t.stems[2].cls, "guitar");
    // The split: deterministic, close to 0.8/0.1/0.1 over many ids.
    std::map<std::string, int> n;
    for (int i = 0; i < 20000; ++i) n[data::split_for("track-" + std::to_string(i))]++;
    EXPECT_NEAR(n["train"] / 20000.0, 0.8, 0.015);
    EXPECT_NEAR(n["valid"] / 20000.0, 0.1, 0.01);
    EXPECT_NEAR(n["test"] / 20000.0, 0.1, 0.01);
    EXPECT_EQ(data::split_for("abc"), data::split_for("abc"));
}

TEST(Layouts, SlakhMetadataYaml) {
    const fs::path r = testutil::temp_dir("slakh");
    const fs::path td = r / "validation" / "Track01501";
    text(td / "metadata.yaml",
         "UUID: 1234\n"
         "audio_dir: stems\n"
         "stems:\n"
         "  S00:\n    audio_rendered: true\n    inst_class: Piano\n    is_drum: false\n    program_num: 0\n"
         "  S01:\n    audio_rendered: true\n    inst_class: Drums\n    is_drum: true\n    program_num: 0\n"
         "  S02:\n    audio_rendered: false\n    inst_class: Guitar\n    is_drum: false\n    program_num: 25\n"
         "  S03:\n    audio_rendered: true\n    inst_class: Bass\n    is_drum: false\n    program_num: 33\n");
    flac(td / "stems" / "S00.flac", tone(1, 440, 0, 1, 0.3f, 44100), 44100);
    flac(td / "stems" / "S01.flac", tone(1, 100, 0, 1, 0.3f, 44100), 44100);
    flac(td / "stems" / "S03.flac", tone(1, 55, 0, 1, 0.3f, 44100), 44100);
    const auto ds = data::scan(r.string());
    EXPECT_EQ(ds.layout, data::Layout::Slakh);
    ASSERT_EQ(ds.tracks.size(), 1u);
    EXPECT_EQ(ds.tracks[0].split, "valid");
    EXPECT_EQ(names(ds.tracks[0]), (std::vector<std::string>{"S00", "S01", "S03"}));
    EXPECT_EQ(ds.tracks[0].stems[0].cls, "Piano");
    EXPECT_EQ(ds.tracks[0].stems[2].cls, "Bass");
    EXPECT_EQ(ds.stems_not_rendered, 1u);
    // FLAC at 44.1 kHz decodes to 16 kHz.
    const auto ta = data::load_track(ds.tracks[0]);
    EXPECT_EQ(ta.length, 16000u);
}

TEST(Layouts, CocoChorales) {
    const fs::path r = testutil::temp_dir("coco");
    for (const char* tr : {"string_track000001", "brass_track000002"})
        for (const char* s : {"1_violin", "2_violin", "3_viola", "4_cello"})
            wav(r / "valid" / tr / "stems_audio" / (std::string(s) + ".wav"), tone(1, 300, 0, 1));
    text(r / "valid" / "string_track000001" / "metadata.yaml", "ensemble: string\n");
    const auto ds = data::scan(r.string());
    EXPECT_EQ(ds.layout, data::Layout::CocoChorales);
    ASSERT_EQ(ds.tracks.size(), 2u);
    const auto* t = find(ds, "string_track000001");
    ASSERT_TRUE(t);
    EXPECT_EQ(t->group, "string");
    EXPECT_EQ(t->stems[2].cls, "viola");
    EXPECT_EQ(find(ds, "brass_track000002")->group, "brass");
}

TEST(Layouts, GenericWithAndWithoutSplits) {
    const fs::path a = testutil::temp_dir("generic_a");
    wav(a / "test" / "song" / "gtr.wav", tone(1, 300, 0, 1));
    wav(a / "test" / "song" / "vox.flac", tone(1, 500, 0, 1));
    wav(a / "test" / "song" / "mix.wav", tone(1, 500, 0, 1));
    text(a / "test" / "song" / "notes.txt", "not audio");
    auto ds = data::scan(a.string());
    EXPECT_EQ(ds.layout, data::Layout::Generic);
    ASSERT_EQ(ds.tracks.size(), 1u);
    EXPECT_EQ(ds.tracks[0].split, "test");
    EXPECT_EQ(names(ds.tracks[0]), (std::vector<std::string>{"gtr", "vox"}));

    const fs::path b = testutil::temp_dir("generic_b");
    wav(b / "mysong" / "a.wav", tone(1, 300, 0, 1));
    wav(b / "mysong" / "b.wav", tone(1, 300, 0, 1));
    ds = data::scan(b.string());
    ASSERT_EQ(ds.tracks.size(), 1u);
    EXPECT_EQ(ds.tracks[0].split, data::split_for("mysong"));
    EXPECT_THROW(data::parse_layout("nope"), Error);
    EXPECT_THROW(data::scan((b / "missing").string()), Error);
}

// ---------------------------------------------------------------- bad data
TEST(LoadTrack, BadStemsAreSkippedAndLengthsCut) {
    const fs::path r = testutil::temp_dir("bad");
    const fs::path td = r / "train" / "song";
    wav(td / "a.wav", tone(2.0, 300, 0, 2));
    wav(td / "b.wav", tone(2.1, 400, 0, 2.1));   // slightly longer: cut to the shortest
    wav(td / "silent.wav", std::vector<float>(16000, 0.0f));
    text(td / "notaudio.wav", "this is not a wav file");
    {
        // A WAV whose data chunk was cut off.
        wav(td / "trunc.wav", tone(2.0, 500, 0, 2));
        const auto size = fs::file_size(td / "trunc.wav");
        fs::resize_file(td / "trunc.wav", size / 3);
    }
    const auto ds = data::scan(r.string());
    ASSERT_EQ(ds.tracks.size(), 1u);
    auto t = ds.tracks[0];
    t.stems.push_back({"missing", "missing", (td / "missing.wav").string()});
    const auto ta = data::load_track(t);
    EXPECT_EQ(ta.length, 32000u);
    ASSERT_EQ(ta.stems.size(), 2u);
    EXPECT_EQ(ta.stems[0].name, "a");
    EXPECT_EQ(ta.stems[1].name, "b");
    EXPECT_EQ(ta.stems_skipped, 4u);  // silent, not audio, truncated, missing
    bool named = false;
    for (const auto& w : ta.warnings) named |= w.find("missing.wav") != std::string::npos;
    EXPECT_TRUE(named);

    data::TrackSource single = t;
    single.stems = {t.stems[0]};
    EXPECT_THROW(data::load_track(single), Error);
}

// ---------------------------------------------------------------- the cache
TEST(Cache, RoundTripResumeAndSkips) {
    const std::string root = make_set("cache_set", 3, 6.0);
    // A track with a single usable stem is skipped and recorded.
    wav(fs::path(root) / "train" / "lonely" / "only.wav", tone(6, 200, 0, 6));
    const std::string cache = testutil::temp_dir("cache_dir");
    const auto ds = data::scan(root);
    data::CacheOptions o;
    o.jobs = 2;
    auto rep = data::build_cache(ds, cache, o);
    EXPECT_EQ(rep.tracks_indexed, 3u);
    EXPECT_EQ(rep.tracks_skipped, 1u);
    EXPECT_EQ(rep.stems, 12u);
    data::StemCache c(cache);
    ASSERT_EQ(c.size(), 3u);
    EXPECT_EQ(c.layout(), "generic");
    EXPECT_EQ(c.tracks_skipped(), 1u);
    // Samples come back within int16 quantization of the stem's own peak.
    const auto* src = find(ds, c.track(0).id);
    ASSERT_TRUE(src);
    const auto ta = data::load_track(*src);
    std::vector<float> got(16000);
    for (size_t s = 0; s < ta.stems.size(); ++s) {
        ASSERT_EQ(c.track(0).stems[s].name, ta.stems[s].name);
        c.read(0, s, 20000, 16000, got.data());
        for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], ta.audio[s][20000 + i], 2e-5);
    }
    // Reading past the end gives zeros.
    c.read(0, 0, c.track(0).length - 100, 1000, got.data());
    for (size_t i = 100; i < 1000; ++i) ASSERT_EQ(got[i], 0.0f);
    // Activity: bass plays for the first 60 % only.
    size_t bass = 0;
    while (c.track(0).stems[bass].name != "bass") ++bass;
    EXPECT_TRUE(c.active(0, bass, 0, 16000, {}));
    EXPECT_FALSE(c.active(0, bass, 80000, 16000, {}));

    // Resume: nothing changed, nothing decoded again; a changed stem re-indexes only its track.
    rep = data::build_cache(ds, cache, o);
    EXPECT_EQ(rep.tracks_reused, 3u);
    EXPECT_EQ(rep.tracks_indexed, 0u);
    wav(fs::path(root) / "train" / c.track(1).id / "lead.wav", tone(6, 999, 0, 6, 0.25f));
    rep = data::build_cache(data::scan(root), cache, o);
    EXPECT_EQ(rep.tracks_reused, 2u);
    EXPECT_EQ(rep.tracks_indexed, 1u);

    // Float32 caches are exact.
    const std::string cf = testutil::temp_dir("cache_f32");
    o.format = data::SampleFormat::Float32;
    data::build_cache(ds, cf, o);
    data::StemCache c32(cf);
    c32.read(0, 0, 0, 16000, got.data());
    for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], ta.audio[0][i]);

    // A damaged cache names the file.
    fs::resize_file(fs::path(cf) / "tracks" / (c32.track(0).key + ".pcm"), 10);
    try {
        data::StemCache bad(cf);
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find(".pcm"), std::string::npos);
    }
}

TEST(Cache, OneWriterAtATimeAndOneDatasetPerCache) {
    const std::string a = make_set("lock_a", 2, 6.0), b = make_set("lock_b", 2, 6.0);
    const std::string cache = testutil::temp_dir("lock_cache");
    fs::create_directories(cache);
    data::CacheOptions o;
    o.jobs = 1;
    // Another writer holds the cache: this run waits for it instead of indexing beside it.
    const int fd = ::open((fs::path(cache) / ".lock").c_str(), O_RDWR | O_CREAT, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::flock(fd, LOCK_EX), 0);
    std::atomic<bool> done{false};
    std::thread writer([&] {
        data::build_cache(data::scan(a), cache, o);
        done = true;
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    EXPECT_FALSE(done.load());
    EXPECT_FALSE(data::is_cache(cache));
    ::close(fd);  // the other writer ends
    writer.join();
    EXPECT_TRUE(data::is_cache(cache));
    // A second dataset into the same cache is refused, naming both; the cache still holds the first.
    try {
        data::build_cache(data::scan(b), cache, o);
        ADD_FAILURE() << "indexing another dataset into the cache should fail";
    } catch (const Error& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("holds the dataset"), std::string::npos) << msg;
        EXPECT_NE(msg.find("lock_a"), std::string::npos) << msg;
    }
    EXPECT_EQ(data::StemCache(cache).size(), 2u);
    EXPECT_EQ(data::build_cache(data::scan(a), cache, o).tracks_reused, 2u);  // its own dataset again: reused
}

// ---------------------------------------------------------------- the sampler
class Sampler : public ::testing::Test {
   protected:
    static void SetUpTestSuite() {
        const std::string root = make_set("sampler_set", 10, 12.0);
        dir_ = new std::string(testutil::temp_dir("sampler_cache"));
        data::CacheOptions o;
        o.jobs = 2;
        data::build_cache(data::scan(root), *dir_, o);
        cache_ = new data::StemCache(*dir_);
    }
    static void TearDownTestSuite() {
        delete cache_;
        delete dir_;
    }
    // Batches of 6 windows of 1 s (the set's tracks are 12 s long).
    static data::SamplerOptions small_batches(uint64_t seed) {
        data::SamplerOptions o;
        o.batch = 6;
        o.window = 16000;
        o.max_overlap = 0.5;
        o.seed = seed;
        return o;
    }
    // The windows an epoch drew from each track overlap by at most r = 0.5 of a window.
    static void expect_overlap_within_r(std::map<uint32_t, std::vector<int64_t>>& offsets) {
        for (auto& [t, offs] : offsets) {
            std::sort(offs.begin(), offs.end());
            for (size_t i = 1; i < offs.size(); ++i)
                ASSERT_LE(16000 - (offs[i] - offs[i - 1]), 0.5 * 16000) << "overlap above r, track " << t;
        }
    }
    static std::string* dir_;
    static data::StemCache* cache_;
};
std::string* Sampler::dir_ = nullptr;
data::StemCache* Sampler::cache_ = nullptr;

TEST_F(Sampler, InvariantsOverManySeeds) {
    const auto& c = *cache_;
    for (auto mode : {data::PairMode::SubMix, data::PairMode::SingleStem}) {
        for (uint64_t seed = 0; seed < 40; ++seed) {
            data::SamplerOptions o = small_batches(seed);
            o.mode = mode;
            data::PairSampler ps(c, o);
            const int epoch = static_cast<int>(seed % 3);
            const auto& plan = ps.plan(epoch);
            ASSERT_GT(plan.size(), 3u);
            std::map<uint32_t, std::vector<int64_t>> offsets;  // all windows of each track in the epoch
            for (size_t i = 0; i < plan.size(); ++i) {
                const auto b = ps.batch(epoch, i);
                ASSERT_EQ(b.K, 6);
                ASSERT_EQ(b.anchor.size(), size_t(6 * 16000));
                std::set<uint32_t> tracks(b.track.begin(), b.track.end());
                ASSERT_EQ(tracks.size(), 6u) << "K distinct tracks";
                for (int k = 0; k < b.K; ++k) {
                    const auto& A = b.anchor_stems[k];
                    const auto& P = b.positive_stems[k];
                    ASSERT_FALSE(A.empty());
                    ASSERT_FALSE(P.empty());
                    for (int s : A) ASSERT_EQ(std::count(P.begin(), P.end(), s), 0) << "disjoint";
                    for (int s : A) ASSERT_TRUE(c.active(b.track[k], s, b.offset[k], 16000, o.activity));
                    for (int s : P) ASSERT_TRUE(c.active(b.track[k], s, b.offset[k], 16000, o.activity));
                    if (mode == data::PairMode::SingleStem) {
                        ASSERT_EQ(A.size(), 1u);
                        ASSERT_EQ(P.size(), 1u);
                    }
                    ASSERT_GE(b.offset[k], 0);
                    ASSERT_LE(b.offset[k] + 16000, c.track(b.track[k]).length);
                    offsets[b.track[k]].push_back(b.offset[k]);
                }
            }
            expect_overlap_within_r(offsets);
        }
    }
}

TEST_F(Sampler, SubMixesAreSumsOfTheirStems) {
    data::SamplerOptions o;
    o.batch = 4;
    o.seed = 3;
    data::PairSampler ps(*cache_, o);  // L = 80000, the paper's 5 s
    const auto b = ps.batch(0, 0);
    std::vector<float> ref(80000), one(80000);
    for (int k = 0; k < b.K; ++k) {
        std::fill(ref.begin(), ref.end(), 0.0f);
        for (int s : b.anchor_stems[k]) {
            cache_->read(b.track[k], s, b.offset[k], 80000, one.data());
            for (size_t i = 0; i < ref.size(); ++i) ref[i] += one[i];
        }
        for (size_t i = 0; i < ref.size(); i += 97) ASSERT_NEAR(b.anchor[k * 80000 + i], ref[i], 1e-6);
    }
}

TEST_F(Sampler, StemTransformSeesEachStemOnceWithItsOwnSeedAndSumsItsOutput) {
    // The augmentation hook: every stem of both sides passes through it before the sums, with a seed that is a
    // function of the batch alone (the same batch twice: the same seeds), and what it returns is what is summed.
    data::SamplerOptions o = small_batches(5);
    data::PairSampler plain(*cache_, o);
    std::vector<uint64_t> seeds;
    o.stem_transform = [&seeds](std::vector<float>& x, uint64_t seed) {
        seeds.push_back(seed);
        for (float& v : x) v = -2.0f * v;  // a transform whose effect on the sum is known
    };
    data::PairSampler flipped(*cache_, o);
    for (size_t i = 0; i < 3; ++i) {
        const auto x = plain.batch(1, i);
        seeds.clear();
        const auto y = flipped.batch(1, i);
        size_t stems = 0;
        for (int k = 0; k < x.K; ++k) stems += x.anchor_stems[k].size() + x.positive_stems[k].size();
        ASSERT_EQ(seeds.size(), stems) << "each stem of each side once";
        ASSERT_EQ(std::set<uint64_t>(seeds.begin(), seeds.end()).size(), stems) << "a seed of its own per stem";
        ASSERT_EQ(x.anchor_stems, y.anchor_stems) << "the draw of windows and stems is unchanged";
        ASSERT_EQ(x.offset, y.offset);
        for (size_t j = 0; j < x.anchor.size(); ++j) {
            ASSERT_NEAR(y.anchor[j], -2.0f * x.anchor[j], 1e-5f);
            ASSERT_NEAR(y.positive[j], -2.0f * x.positive[j], 1e-5f);
        }
        const auto first = seeds;
        seeds.clear();
        flipped.batch(1, i);
        ASSERT_EQ(seeds, first) << "the seeds are a function of the batch";
    }
    o.stem_transform = [](std::vector<float>& x, uint64_t) { x.pop_back(); };
    data::PairSampler broken(*cache_, o);
    EXPECT_THROW(broken.batch(0, 0), Error);
}

TEST_F(Sampler, SwapRolesSwapsAboutHalfThePairsAndNothingElse) {
    // The same windows and stem sets with and without --swap-roles; about half the pairs change sides, and the
    // anchors stop being the fuller side (the reference's draw: anchor size in [1, n-1], positive in [1, n - a]).
    data::SamplerOptions o;
    o.batch = 5;
    o.window = 16000;
    o.seed = 21;
    data::PairSampler plain(*cache_, o);
    o.swap_roles = true;
    data::PairSampler swapped(*cache_, o);
    size_t pairs = 0, swaps = 0;
    double plain_extra = 0, swapped_extra = 0;  // summed (anchor size - positive size)
    for (int epoch = 0; epoch < 12; ++epoch)
        for (size_t i = 0; i < plain.batches_per_epoch(epoch); ++i) {
            const auto x = plain.batch(epoch, i), y = swapped.batch(epoch, i);
            ASSERT_EQ(x.track, y.track);
            ASSERT_EQ(x.offset, y.offset);
            for (int k = 0; k < x.K; ++k, ++pairs) {
                const bool same = x.anchor_stems[k] == y.anchor_stems[k] && x.positive_stems[k] == y.positive_stems[k];
                const bool crossed = x.anchor_stems[k] == y.positive_stems[k] && x.positive_stems[k] == y.anchor_stems[k];
                ASSERT_TRUE(same || crossed);
                if (!same) {
                    ++swaps;
                    const float* a = y.anchor.data() + static_cast<size_t>(k) * y.L;
                    const float* q = x.positive.data() + static_cast<size_t>(k) * x.L;
                    ASSERT_TRUE(std::equal(a, a + y.L, q)) << "the swapped anchor is the plain positive's audio";
                }
                plain_extra += double(x.anchor_stems[k].size()) - double(x.positive_stems[k].size());
                swapped_extra += double(y.anchor_stems[k].size()) - double(y.positive_stems[k].size());
            }
        }
    ASSERT_GT(pairs, 200u);
    EXPECT_NEAR(double(swaps) / pairs, 0.5, 0.1);
    EXPECT_GT(plain_extra / pairs, 0.2) << "without the swap anchors are fuller";
    EXPECT_LT(std::abs(swapped_extra / pairs), std::abs(plain_extra / pairs) / 2);
}

TEST_F(Sampler, DeterministicAndPrefetchedInOrder) {
    data::SamplerOptions o;
    o.batch = 5;
    o.window = 16000;
    o.seed = 77;
    data::PairSampler a(*cache_, o), b(*cache_, o);
    for (size_t i = 0; i < a.batches_per_epoch(1); ++i) {
        const auto x = a.batch(1, i), y = b.batch(1, i);
        ASSERT_EQ(x.track, y.track);
        ASSERT_EQ(x.offset, y.offset);
        ASSERT_EQ(x.anchor_stems, y.anchor_stems);
        ASSERT_EQ(x.anchor, y.anchor);
        ASSERT_EQ(x.positive, y.positive);
    }
    o.seed = 78;
    data::PairSampler d(*cache_, o);
    EXPECT_NE(d.batch(1, 0).offset, a.batch(1, 0).offset);
    EXPECT_NE(a.batch(0, 0).offset, a.batch(1, 0).offset) << "epochs differ";

    data::Prefetcher pf(a, 1, 3, 4);
    size_t n = 0;
    while (auto bt = pf.next()) {
        const auto ref = a.batch(1, n);
        ASSERT_EQ(bt->index, n);
        ASSERT_EQ(bt->anchor, ref.anchor);
        ++n;
    }
    EXPECT_EQ(n, a.batches_per_epoch(1));
    // Abandoning a prefetcher mid-epoch must not hang.
    { data::Prefetcher early(a, 2, 2, 2); early.next(); }
}

TEST_F(Sampler, WindowsPerTrackHoldNNonOverlappingWindowsOfEachTrack) {
    // --windows-per-track N: every batch is K/N tracks, N windows each, at least a window apart from one another;
    // the windows of an epoch still keep the overlap rule, and each pair is a normal disjoint sub-mix draw.
    const auto& c = *cache_;
    for (int n : {2, 3}) {
        size_t batches = 0;
        for (uint64_t seed = 0; seed < 20; ++seed) {
            data::SamplerOptions o = small_batches(seed);
            o.windows_per_track = n;
            data::PairSampler ps(c, o);
            const int epoch = static_cast<int>(seed % 3);
            std::map<uint32_t, std::vector<int64_t>> offsets;
            for (size_t i = 0; i < ps.batches_per_epoch(epoch); ++i, ++batches) {
                const auto b = ps.batch(epoch, i);
                ASSERT_EQ(b.K, 6);
                std::map<uint32_t, std::vector<int64_t>> of_track;
                for (int k = 0; k < b.K; ++k) {
                    of_track[b.track[k]].push_back(b.offset[k]);
                    offsets[b.track[k]].push_back(b.offset[k]);
                    ASSERT_FALSE(b.anchor_stems[k].empty());
                    ASSERT_FALSE(b.positive_stems[k].empty());
                }
                ASSERT_EQ(of_track.size(), static_cast<size_t>(6 / n)) << "K/N tracks";
                for (auto& [t, offs] : of_track) {
                    ASSERT_EQ(offs.size(), static_cast<size_t>(n)) << "N windows of each track";
                    std::sort(offs.begin(), offs.end());
                    for (size_t i = 1; i < offs.size(); ++i)
                        ASSERT_GE(offs[i] - offs[i - 1], 16000) << "the windows of a track do not overlap";
                }
            }
            expect_overlap_within_r(offsets);
        }
        EXPECT_GT(batches, 20u * 2u) << "N=" << n;
    }
    // N = 1 plans batches of K distinct tracks, as the paper.
    data::SamplerOptions o = small_batches(0);
    const auto plain = data::PairSampler(c, o).batch(0, 0);
    EXPECT_EQ(std::set<uint32_t>(plain.track.begin(), plain.track.end()).size(), 6u);
    // K must be a multiple of N; K/N above the tracks at hand is refused by name.
    o.windows_per_track = 4;
    EXPECT_THROW(data::PairSampler(c, o), Error);
    o.windows_per_track = 0;
    EXPECT_THROW(data::PairSampler(c, o), Error);
    o.windows_per_track = 2;
    o.batch = 22;  // 11 tracks, the set has 10
    try {
        data::PairSampler(c, o).plan(0);
        FAIL() << "K/2 = 11 tracks from 10";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("K/2 = 11"), std::string::npos) << e.what();
    }
}

TEST_F(Sampler, TooFewTracksForK) {
    data::SamplerOptions o;
    o.batch = 11;  // 10 tracks in the set
    data::PairSampler ps(*cache_, o);
    EXPECT_THROW(ps.plan(0), Error);
    o.split = "valid";
    EXPECT_THROW(data::PairSampler(*cache_, o), Error);
}

TEST_F(Sampler, FixedProtocolIsTheSameEveryTime) {
    const auto a = data::fixed_protocol(*cache_, "train");
    data::StemCache again(*dir_);
    const auto b = data::fixed_protocol(again, "train");
    EXPECT_EQ(data::protocol_json(*cache_, a, 80000), data::protocol_json(again, b, 80000));
    ASSERT_FALSE(a.empty());
    std::set<int64_t> offs;
    for (const auto& it : a) {
        EXPECT_EQ(it.offset % 40000, 0) << "chunks start at multiples of L/2";
        offs.insert(it.offset);
        EXPECT_FALSE(it.anchor.empty());
        EXPECT_FALSE(it.positive.empty());
        for (int s : it.anchor) EXPECT_EQ(std::count(it.positive.begin(), it.positive.end(), s), 0);
    }
    EXPECT_TRUE(offs.count(0));
    EXPECT_TRUE(offs.count(40000));
    // 12 s tracks (192000 samples): chunks at 0, 80000 (shift 0; 160000 leaves a sliver under L/2, dropped) and
    // at 40000, 120000 (shift L/2; the last one is zero-padded), where at least 2 stems are active.
    for (const auto& it : a) EXPECT_TRUE(it.offset == 0 || it.offset == 40000 || it.offset == 80000 || it.offset == 120000);
    const auto other = data::fixed_protocol(*cache_, "train", 80000, data::PairMode::SubMix, 1);
    EXPECT_NE(data::protocol_json(*cache_, a, 80000), data::protocol_json(*cache_, other, 80000));
    std::vector<float> an(80000), po(80000);
    data::render_item(*cache_, a[0], 80000, an.data(), po.data());
    double e = 0;
    for (float v : an) e += v * v;
    EXPECT_GT(e, 0.0);
}

// ---------------------------------------------------------------- the CLI
TEST(DataCli, IndexInfoProtocol) {
    const std::string root = make_set("cli_set", 3, 6.0);
    const std::string cache = testutil::temp_dir("cli_cache");
    auto r = testutil::run_cli("data index " + root + " -o " + cache);
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_NE(r.out.find("3 indexed"), std::string::npos) << r.out;
    r = testutil::run_cli("data index " + root + " -o " + cache);
    EXPECT_NE(r.out.find("3 reused"), std::string::npos) << r.out;
    r = testutil::run_cli("data info " + cache);
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_NE(r.out.find("generic"), std::string::npos);
    EXPECT_NE(r.out.find("train"), std::string::npos);
    r = testutil::run_cli("data info " + root);
    ASSERT_EQ(r.code, 0) << r.out;
    r = testutil::run_cli("data protocol " + cache + " --split train -o " + cache + "/p.json");
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_TRUE(fs::exists(cache + "/p.json"));
    r = testutil::run_cli("data info /nonexistent/dir");
    EXPECT_NE(r.code, 0);
    EXPECT_NE(r.out.find("/nonexistent/dir"), std::string::npos) << r.out;
}

TEST(DrawPair, SharedStemPairsShareExactlyOneStemAndDiffer) {
    // The warm-up pairs: one common stem, the rest disjoint, never the same set, all from the active stems.
    for (int n = 2; n <= 6; ++n) {
        std::vector<int> active;
        for (int i = 0; i < n; ++i) active.push_back(10 + 3 * i);
        std::set<std::pair<size_t, size_t>> sizes;
        for (uint64_t seed = 0; seed < 300; ++seed) {
            std::vector<int> a, p;
            data::draw_pair(active, data::PairMode::SharedStem, seed, a, p);
            std::vector<int> common;
            std::set_intersection(a.begin(), a.end(), p.begin(), p.end(), std::back_inserter(common));
            ASSERT_EQ(common.size(), 1u) << "n " << n << " seed " << seed;
            ASSERT_NE(a, p);
            for (int s : a) ASSERT_EQ(std::count(active.begin(), active.end(), s), 1);
            for (int s : p) ASSERT_EQ(std::count(active.begin(), active.end(), s), 1);
            ASSERT_LE(a.size() + p.size() - 1, static_cast<size_t>(n));
            sizes.insert({a.size(), p.size()});
        }
        if (n >= 4) {
            EXPECT_GE(sizes.size(), 4u) << "sub-mix sizes vary";
        }
    }
    EXPECT_EQ(data::parse_pair_mode(data::pair_mode_name(data::PairMode::SharedStem)), data::PairMode::SharedStem);
    EXPECT_THROW(data::parse_pair_mode("both"), Error);
}
