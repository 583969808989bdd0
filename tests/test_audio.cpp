// Audio input: formats, channel mixing, resampling, and every kind of bad input named in the issue.
#include <gtest/gtest.h>

#include <cstdio>
#include <random>
#include <sndfile.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "cocola/audio.hpp"
#include "cocola/error.hpp"
#include "cocola/fsutil.hpp"
#include "cocola/npy.hpp"
#include "cocola/safetensors_header.hpp"
#include "test_util.hpp"

using namespace cocola;

namespace {

constexpr double kPi = 3.14159265358979323846;

// Writes interleaved float frames with libsndfile in the given format.
void write_file(const std::string& path, const std::vector<float>& interleaved, int channels, int rate, int format) {
    SF_INFO info{};
    info.samplerate = rate;
    info.channels = channels;
    info.format = format;
    SNDFILE* f = sf_open(path.c_str(), SFM_WRITE, &info);
    ASSERT_NE(f, nullptr) << sf_strerror(nullptr);
    sf_writef_float(f, interleaved.data(), static_cast<sf_count_t>(interleaved.size() / channels));
    sf_close(f);
}

std::vector<float> sine(double freq, int rate, size_t n, double amp = 0.5) {
    std::vector<float> x(n);
    for (size_t i = 0; i < n; ++i) x[i] = static_cast<float>(amp * std::sin(2 * kPi * freq * i / rate));
    return x;
}

std::string expect_error(const std::string& path) {
    try {
        audio::load_mono(path);
    } catch (const Error& e) {
        std::string msg = e.what();
        EXPECT_EQ(msg.rfind(path, 0), 0u) << "message should start with the file name: " << msg;
        return msg;
    }
    ADD_FAILURE() << "expected an error for " << path;
    return {};
}

}  // namespace

class AudioTest : public ::testing::Test {
   protected:
    void SetUp() override { dir = testutil::temp_dir("audio"); }
    std::string dir;
};

TEST_F(AudioTest, GoldenFloatWavWithExtraChunksIsBitExact) {
    // The golden WAVs carry fact and PEAK chunks before the data.
    auto x = audio::load_mono(testutil::golden("inputs/00_triad.wav"));
    ASSERT_EQ(x.size(), 80000u);
    std::ifstream in(testutil::golden("inputs/00_triad.wav"), std::ios::binary);
    in.seekg(80);
    std::vector<float> raw(80000);
    in.read(reinterpret_cast<char*>(raw.data()), 320000);
    EXPECT_EQ(x, raw);
}

TEST_F(AudioTest, StereoIsAveragedToMono) {
    const size_t n = 16000;
    auto l = sine(440, 16000, n), r = sine(660, 16000, n, 0.25);
    std::vector<float> inter(2 * n);
    for (size_t i = 0; i < n; ++i) { inter[2 * i] = l[i]; inter[2 * i + 1] = r[i]; }
    const std::string p = dir + "/stereo.wav";
    write_file(p, inter, 2, 16000, SF_FORMAT_WAV | SF_FORMAT_FLOAT);
    auto x = audio::load_mono(p);
    ASSERT_EQ(x.size(), n);
    for (size_t i = 0; i < n; ++i) ASSERT_NEAR(x[i], 0.5f * (l[i] + r[i]), 1e-7);
}

TEST_F(AudioTest, Pcm24At44100IsResampledTo16k) {
    const size_t n = 44100;  // 1 s
    const std::string p = dir + "/pcm24_44k.wav";
    write_file(p, sine(1000, 44100, n), 1, 44100, SF_FORMAT_WAV | SF_FORMAT_PCM_24);
    EXPECT_EQ(audio::probe(p).sample_rate, 44100);
    auto x = audio::load_mono(p);
    ASSERT_NEAR(static_cast<double>(x.size()), 16000.0, 1.0);
    // Away from the edges the resampled tone equals the tone sampled at 16 kHz.
    auto ref = sine(1000, 16000, x.size());
    double err = 0;
    for (size_t i = 1000; i + 1000 < x.size(); ++i) err = std::max(err, static_cast<double>(std::abs(x[i] - ref[i])));
    EXPECT_LT(err, 2e-3);
}

TEST_F(AudioTest, FlacAndPcm16AreRead) {
    auto s = sine(220, 16000, 8000);
    for (auto [name, fmt] : {std::pair<std::string, int>{"a.flac", SF_FORMAT_FLAC | SF_FORMAT_PCM_16},
                             {"a16.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_16},
                             {"a32.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_32}}) {
        const std::string p = dir + "/" + name;
        write_file(p, s, 1, 16000, fmt);
        auto x = audio::load_mono(p);
        ASSERT_EQ(x.size(), s.size()) << name;
        for (size_t i = 0; i < s.size(); ++i) ASSERT_NEAR(x[i], s[i], 1.0 / 32768 + 1e-6) << name;
    }
}

TEST_F(AudioTest, OggVorbisIsRead) {
    const std::string p = dir + "/a.ogg";
    write_file(p, sine(440, 16000, 16000), 1, 16000, SF_FORMAT_OGG | SF_FORMAT_VORBIS);
    auto x = audio::load_mono(p);
    EXPECT_NEAR(static_cast<double>(x.size()), 16000.0, 1.0);
}

TEST_F(AudioTest, SilenceIsValid) {
    const std::string p = dir + "/silence.wav";
    write_file(p, std::vector<float>(4000, 0.f), 1, 16000, SF_FORMAT_WAV | SF_FORMAT_FLOAT);
    auto x = audio::load_mono(p);
    EXPECT_EQ(x.size(), 4000u);
}

TEST_F(AudioTest, MissingFile) { EXPECT_NE(expect_error(dir + "/nope.wav").find("no such file"), std::string::npos); }

TEST_F(AudioTest, NotAudio) {
    const std::string p = dir + "/text.wav";
    std::ofstream(p) << "this is not audio at all, just some text that is long enough to be a header";
    EXPECT_NE(expect_error(p).find("not a readable audio file"), std::string::npos);
}

TEST_F(AudioTest, TruncatedWav) {
    const std::string p = dir + "/full.wav", t = dir + "/truncated.wav";
    write_file(p, sine(440, 16000, 16000), 1, 16000, SF_FORMAT_WAV | SF_FORMAT_PCM_16);
    std::ifstream in(p, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), {});
    std::ofstream(t, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size() / 2));
    EXPECT_NE(expect_error(t).find("truncated"), std::string::npos);
}

// A hand-made PCM WAV whose data chunk holds `extra` bytes past its last whole frame (declared in the chunk size,
// all present): not truncated. libsndfile decodes the whole frames; we warn about the rest.
std::string wav_with_partial_frame(const std::string& path, int channels, int extra, bool pad) {
    std::vector<int16_t> samples(static_cast<size_t>(1000 * channels));
    for (size_t i = 0; i < samples.size(); ++i) samples[i] = static_cast<int16_t>((i * 37) % 2000 - 1000);
    std::string data(reinterpret_cast<const char*>(samples.data()), samples.size() * 2);
    data.append(static_cast<size_t>(extra), '\x05');
    auto u32 = [](uint32_t v) { return std::string(reinterpret_cast<const char*>(&v), 4); };
    auto u16 = [](uint16_t v) { return std::string(reinterpret_cast<const char*>(&v), 2); };
    const uint16_t align = static_cast<uint16_t>(2 * channels);
    std::string fmt = u16(1) + u16(static_cast<uint16_t>(channels)) + u32(16000) + u32(16000u * align) + u16(align) + u16(16);
    std::string body = "WAVEfmt " + u32(16) + fmt + "data" + u32(static_cast<uint32_t>(data.size())) + data;
    if (pad && data.size() % 2) body += '\0';
    std::ofstream(path, std::ios::binary) << "RIFF" << u32(static_cast<uint32_t>(body.size())) << body;
    return path;
}

TEST_F(AudioTest, PartialLastFrameIsDecodedWithAWarning) {
    std::vector<std::string> warnings;
    audio::set_warning_handler([&](const std::string& m) { warnings.push_back(m); });
    struct Case { int channels, extra; bool pad; };
    for (const Case c : {Case{2, 2, false}, Case{2, 3, false}, Case{2, 3, true}, Case{1, 1, false}, Case{1, 1, true}}) {
        warnings.clear();
        const std::string p = wav_with_partial_frame(dir + "/partial.wav", c.channels, c.extra, c.pad);
        std::vector<float> x;
        ASSERT_NO_THROW(x = audio::load_mono(p)) << c.channels << " channels, " << c.extra << " extra bytes";
        EXPECT_EQ(x.size(), 1000u);
        double frame1 = 0;  // frame 1's channels, averaged
        for (int ch = 0; ch < c.channels; ++ch) frame1 += static_cast<double>((static_cast<size_t>(c.channels + ch) * 37) % 2000) - 1000;
        EXPECT_FLOAT_EQ(x[1], static_cast<float>(frame1 / c.channels / 32768.0));
        ASSERT_EQ(warnings.size(), 1u) << c.channels << " channels, " << c.extra << " extra bytes";
        EXPECT_NE(warnings[0].find("partial.wav: the data chunk ends " + std::to_string(c.extra) + " bytes into a frame"),
                  std::string::npos) << warnings[0];
    }
    // A whole number of frames: no warning; a file cut short is still refused.
    warnings.clear();
    audio::load_mono(wav_with_partial_frame(dir + "/whole.wav", 2, 0, false));
    EXPECT_TRUE(warnings.empty());
    const std::string full = wav_with_partial_frame(dir + "/full.wav", 2, 0, false);
    std::ifstream in(full, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), {});
    std::ofstream(dir + "/cut.wav", std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size() - 1001));
    EXPECT_NE(expect_error(dir + "/cut.wav").find("truncated"), std::string::npos);
    audio::set_warning_handler({});
}

TEST_F(AudioTest, DamagedMp3GivesOneClearErrorAndNoDecoderNoise) {
    std::string seed = testutil::read_all(testutil::data("fuzz/audio/mono.mp3"));
    ASSERT_GT(seed.size(), 1000u);
    std::mt19937 rng(7);
    std::string noise(3000, '\0');
    for (auto& c : noise) c = static_cast<char>(rng());
    std::ofstream(dir + "/truncated.mp3", std::ios::binary) << seed.substr(0, 700);
    std::ofstream(dir + "/noise.mp3", std::ios::binary) << noise;
    std::ofstream(dir + "/noise_with_id3.bin", std::ios::binary) << "ID3" << noise;
    for (const std::string name : {"truncated.mp3", "noise.mp3", "noise_with_id3.bin"}) {
        testing::internal::CaptureStderr();
        const std::string e = expect_error(dir + "/" + name);
        const std::string printed = testing::internal::GetCapturedStderr();
        EXPECT_EQ(printed, "") << name;
        EXPECT_NE(e.find(name + ": not a readable audio file"), std::string::npos) << e;
        EXPECT_EQ(e.find("does not exist"), std::string::npos) << e;
    }
    // A good MP3 still decodes, and stderr works again afterwards.
    EXPECT_GT(audio::load_mono(testutil::data("fuzz/audio/mono.mp3")).size(), 3000u);
    testing::internal::CaptureStderr();
    std::fprintf(stderr, "still here");
    EXPECT_EQ(testing::internal::GetCapturedStderr(), "still here");
}

// Headers a fuzzer made (fuzz_npy): each a clear error naming the file, never an exception of another kind or an
// allocation the data cannot back.
TEST_F(AudioTest, MalformedNpyHeadersAreClearErrors) {
    auto npy_with = [&](const std::string& name, const std::string& header_dict, const std::string& data) {
        std::string header = header_dict;
        header.append((64 - (10 + header.size() + 1) % 64) % 64, ' ');
        header.push_back('\n');
        const uint16_t hlen = static_cast<uint16_t>(header.size());
        std::ofstream f(dir + "/" + name, std::ios::binary);
        f << std::string("\x93NUMPY\x01\x00", 8) << std::string(reinterpret_cast<const char*>(&hlen), 2) << header << data;
        return dir + "/" + name;
    };
    auto error_of = [](const std::string& path) -> std::string {
        try {
            npy::load(path);
        } catch (const Error& e) {
            return e.what();
        }
        return "no error";
    };
    const std::string four(16, '\0');
    EXPECT_NE(error_of(npy_with("empty_shape.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': , }", four))
                  .find("empty_shape.npy: malformed .npy header"), std::string::npos);
    EXPECT_NE(error_of(npy_with("negative.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (-4,), }", four))
                  .find("negative.npy: malformed .npy header"), std::string::npos);
    EXPECT_NE(error_of(npy_with("words.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (x,), }", four))
                  .find("words.npy: malformed .npy header"), std::string::npos);
    EXPECT_NE(error_of(npy_with("huge.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (999999999, 999999999), }", four))
                  .find("huge.npy: truncated .npy data"), std::string::npos);
    EXPECT_NE(error_of(npy_with("unclosed.npy", "{'descr': '<f4, 'fortran_order': False, 'shape': (4,", four))
                  .find("unclosed.npy"), std::string::npos);
    // The good ones still load: a vector, and a scalar (shape ()).
    EXPECT_EQ(npy::load(npy_with("vec.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", four)).numel(), 4);
    EXPECT_EQ(npy::load(npy_with("scalar.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (), }", four)).numel(), 1);
}

// A header fuzz_safetensors made: a dimension of 4.4e20 (a JSON float) was converted to int64 (undefined behaviour).
TEST_F(AudioTest, SafetensorsHeadersWithNumbersOutOfRangeAreClearErrors) {
    auto error_of = [](const std::string& json) -> std::string {
        std::string header = json;
        header.append((8 - header.size() % 8) % 8, ' ');
        const uint64_t len = header.size();
        std::istringstream in(std::string(reinterpret_cast<const char*>(&len), 8) + header + std::string(16, '\0'));
        try {
            safetensors::read_header(in, static_cast<int64_t>(8 + header.size() + 16), "w.safetensors");
        } catch (const Error& e) {
            return e.what();
        }
        return "no error";
    };
    for (const std::string shape : {"[444444442404444444440]", "[4.4e20]", "[2.5]", "[\"4\"]", "[18446744073709551615]"})
        EXPECT_NE(error_of("{\"w\": {\"dtype\": \"F32\", \"shape\": " + shape + ", \"data_offsets\": [0, 16]}}")
                      .find("w.safetensors: malformed header entry for w (shape"), std::string::npos) << shape;
    EXPECT_NE(error_of("{\"w\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 1e30]}}").find("data_offsets"),
              std::string::npos);
    EXPECT_NE(error_of("{\"w\": {\"shape\": [4], \"data_offsets\": [0, 16]}}").find("no dtype"), std::string::npos);
    EXPECT_EQ(error_of("{\"w\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}}"), "no error");
}

TEST_F(AudioTest, TruncatedFlac) {
    const std::string p = dir + "/full.flac", t = dir + "/truncated.flac";
    write_file(p, sine(440, 16000, 32000), 1, 16000, SF_FORMAT_FLAC | SF_FORMAT_PCM_16);
    std::ifstream in(p, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), {});
    std::ofstream(t, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size() / 2));
    expect_error(t);
}

TEST_F(AudioTest, ZeroSamples) {
    const std::string p = dir + "/empty.wav";
    write_file(p, {}, 1, 16000, SF_FORMAT_WAV | SF_FORMAT_FLOAT);
    EXPECT_NE(expect_error(p).find("no samples"), std::string::npos);
}

TEST_F(AudioTest, NanAndInfSamples) {
    for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
        auto s = sine(440, 16000, 1000);
        s[500] = bad;
        const std::string p = dir + "/bad.wav";
        write_file(p, s, 1, 16000, SF_FORMAT_WAV | SF_FORMAT_FLOAT);
        EXPECT_NE(expect_error(p).find("NaN or Inf"), std::string::npos);
    }
}

// A header's rate field set by hand (bytes 24-27 of a canonical WAV header; the byte rate follows it).
static void patch_wav_rate(const std::string& path, uint32_t rate) {
    std::fstream f(path, std::ios::binary | std::ios::in | std::ios::out);
    f.seekp(24);
    const unsigned char b[4] = {static_cast<unsigned char>(rate), static_cast<unsigned char>(rate >> 8),
                                static_cast<unsigned char>(rate >> 16), static_cast<unsigned char>(rate >> 24)};
    f.write(reinterpret_cast<const char*>(b), 4);
}

TEST_F(AudioTest, RatesOutsideTheSupportedRangeAreRefusedBeforeDecoding) {
    // A 1 Hz header once made `score` ask for 1.5e9 samples and crash; 2 GHz became one sample.
    const std::string one = dir + "/one_hz.wav", low = dir + "/999_hz.wav", high = dir + "/2ghz.wav";
    write_file(one, std::vector<float>(96000, 0.1f), 1, 1, SF_FORMAT_WAV | SF_FORMAT_PCM_16);
    write_file(low, std::vector<float>(1000, 0.1f), 1, 999, SF_FORMAT_WAV | SF_FORMAT_PCM_16);
    write_file(high, std::vector<float>(1000, 0.1f), 1, 16000, SF_FORMAT_WAV | SF_FORMAT_PCM_16);
    patch_wav_rate(high, 2000000000u);
    for (const auto& p : {one, low})
        EXPECT_NE(expect_error(p).find("unsupported sample rate"), std::string::npos) << p;
    const std::string msg = expect_error(high);  // libsndfile may refuse it itself; either way, an error naming it
    EXPECT_FALSE(msg.empty());
    // The limits themselves are accepted.
    write_file(low, sine(100, 1000, 1000), 1, 1000, SF_FORMAT_WAV | SF_FORMAT_PCM_16);
    EXPECT_EQ(audio::load_mono(low).size(), 16000u);
    EXPECT_THROW(audio::resample(std::vector<float>(10, 0.f), 1, 16000), Error);
}

TEST_F(AudioTest, FilesLongerThanTheCapAreRefusedBeforeDecoding) {
    // 4 hours and 1 s at 1 kHz, 8-bit: a 14 MB file whose decoding is refused from its header.
    const std::string p = dir + "/long.wav";
    write_file(p, std::vector<float>(static_cast<size_t>((audio::kMaxSeconds + 1) * 1000), 0.f), 1, 1000,
               SF_FORMAT_WAV | SF_FORMAT_PCM_U8);
    EXPECT_NE(expect_error(p).find("too long"), std::string::npos);
    std::filesystem::remove(p);
}

TEST_F(AudioTest, FloatSamplesFarOutsideFullScaleAreRefusedAndModestOnesRead) {
    // Samples around 3e29 once made the mel features +inf with exit 0.
    auto s = sine(440, 16000, 16000);
    s[100] = 3e29f;
    const std::string p = dir + "/huge.wav";
    write_file(p, s, 1, 16000, SF_FORMAT_WAV | SF_FORMAT_FLOAT);
    EXPECT_NE(expect_error(p).find("far outside [-1, 1]"), std::string::npos);
    s[100] = 4.0f;  // past full scale, but a float file may be
    write_file(p, s, 1, 16000, SF_FORMAT_WAV | SF_FORMAT_FLOAT);
    EXPECT_FLOAT_EQ(audio::load_mono(p)[100], 4.0f);
}

TEST_F(AudioTest, WriteWavIsAtomicAndReadable) {
    const std::string p = dir + "/out.wav";
    auto s = sine(440, 16000, 1234);
    audio::write_wav(p, s);
    EXPECT_EQ(audio::load_mono(p), s);
    for (const auto& e : std::filesystem::directory_iterator(dir))
        EXPECT_EQ(e.path().string().find(".tmp."), std::string::npos) << "temp file left behind";
}

TEST_F(AudioTest, TempFilesOfKilledWritersAreRemovedAndLiveOnesKept) {
    // A process that has exited: its pid names a stale temp file, as a `features` run killed mid-write leaves.
    const pid_t child = fork();
    if (child == 0) _exit(0);
    ASSERT_GT(child, 0);
    waitpid(child, nullptr, 0);
    const std::string folder = dir + "/features";  // a folder this process has not written to yet
    std::filesystem::create_directories(folder);
    const std::string stale = folder + "/feat.npy.tmp." + std::to_string(child), live = folder + "/feat.npy.tmp.1";
    const std::string other = folder + "/other.npy.tmp." + std::to_string(child);  // another target: not ours to judge
    std::ofstream(stale) << "half";
    std::ofstream(live) << "pid 1 is alive";
    std::ofstream(other) << "half";
    fsutil::write_file_atomically(folder + "/feat.npy", "new");
    EXPECT_FALSE(std::filesystem::exists(stale));
    EXPECT_TRUE(std::filesystem::exists(live));
    EXPECT_TRUE(std::filesystem::exists(other));
    EXPECT_TRUE(std::filesystem::exists(folder + "/feat.npy"));
    fsutil::write_file_atomically(folder + "/other.npy", "new");  // its own write clears it
    EXPECT_FALSE(std::filesystem::exists(other));
}

TEST_F(AudioTest, FeaturesCommandWarnsAboutAPartialFrameAndDecodesTheRest) {
    const std::string p = wav_with_partial_frame(dir + "/partial.wav", 2, 3, true);
    auto r = testutil::run_cli("features --frontend mel -o " + dir + "/out " + p);
    EXPECT_EQ(r.code, 0) << r.out;
    EXPECT_NE(r.out.find("cocola: warning: " + p + ": the data chunk ends 3 bytes into a frame"), std::string::npos) << r.out;
    EXPECT_EQ(npy::load(dir + "/out/partial.npy").shape, (std::vector<int64_t>{1, 64, 7}));  // 1000 frames: 1 + 1000/160
}

TEST_F(AudioTest, FeaturesCommandReportsBadFilesAndWritesGoodOnes) {
    const std::string good = dir + "/good.wav", bad = dir + "/bad.wav";
    write_file(good, sine(440, 44100, 2 * 44100), 2, 44100, SF_FORMAT_WAV | SF_FORMAT_PCM_24);  // 1 s stereo
    std::ofstream(bad) << "garbage";
    auto r = testutil::run_cli("features --frontend hpss -o " + dir + "/out " + good + " " + bad);
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_NE(r.out.find(bad), std::string::npos) << r.out;
    auto f = npy::load(dir + "/out/good.npy");
    EXPECT_EQ(f.shape, (std::vector<int64_t>{2, 64, 101}));
    r = testutil::run_cli("features --frontend mel -o " + dir + "/out " + good);
    EXPECT_EQ(r.code, 0) << r.out;
    EXPECT_EQ(npy::load(dir + "/out/good.npy").shape, (std::vector<int64_t>{1, 64, 101}));
}
