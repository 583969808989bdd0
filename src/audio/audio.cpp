// Audio decoding with libsndfile and resampling with soxr.
#include "cocola/audio.hpp"

#include <sndfile.h>
#include <soxr.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <memory>
#include <new>

#include "cocola/error.hpp"
#include "cocola/fsutil.hpp"

namespace cocola::audio {
namespace {

struct SndfileCloser {
    void operator()(SNDFILE* f) const { sf_close(f); }
};
using SndfileHandle = std::unique_ptr<SNDFILE, SndfileCloser>;

SndfileHandle open_for_reading(const std::string& path, SF_INFO& info) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) throw Error(path + ": no such file");
    if (std::filesystem::is_directory(path, ec)) throw Error(path + ": is a directory, not an audio file");
    std::memset(&info, 0, sizeof(info));
    SNDFILE* f = sf_open(path.c_str(), SFM_READ, &info);
    if (!f) throw Error(path + ": not a readable audio file (" + sf_strerror(nullptr) + ")");
    return SndfileHandle(f);
}

std::string describe_format(const SF_INFO& info) {
    SF_FORMAT_INFO major{}, sub{};
    major.format = info.format & SF_FORMAT_TYPEMASK;
    sub.format = info.format & SF_FORMAT_SUBMASK;
    std::string s;
    if (sf_command(nullptr, SFC_GET_FORMAT_INFO, &major, sizeof(major)) == 0 && major.name) s = major.name;
    if (sf_command(nullptr, SFC_GET_FORMAT_INFO, &sub, sizeof(sub)) == 0 && sub.name) s += std::string(" (") + sub.name + ")";
    return s;
}

// libsndfile accepts a WAV/AIFF whose data chunk is cut short: it notes that in its log and reads what is there.
// We refuse such files, since a silently shortened stem would corrupt a dataset or a score.
bool header_says_truncated(SNDFILE* f) {
    char log[8192] = {0};
    sf_command(f, SFC_GET_LOG_INFO, log, sizeof(log) - 1);
    std::string s(log);
    return s.find("truncated") != std::string::npos || s.find("should be") != std::string::npos ||
           s.find("Data length in header") != std::string::npos;
}

// Rates and lengths we decode: outside them a file is almost surely broken (a 1 Hz header turned a 6 s file into
// 1.5e9 samples at 16 kHz), and past them the buffers would not fit a normal machine's memory.
void check_rate(const std::string& what, long long rate) {
    if (rate < kMinSampleRate || rate > kMaxSampleRate)
        throw Error(what + ": unsupported sample rate " + std::to_string(rate) + " Hz (supported: " +
                    std::to_string(kMinSampleRate) + " to " + std::to_string(kMaxSampleRate) + " Hz)");
}
void check_length(const std::string& path, long long frames, int rate) {
    if (frames > kMaxFrames || static_cast<double>(frames) / rate > kMaxSeconds)
        throw Error(path + ": too long (" + std::to_string(frames) + " frames at " + std::to_string(rate) +
                    " Hz; at most " + std::to_string(kMaxSeconds / 3600) + " hours and " + std::to_string(kMaxFrames) +
                    " frames are decoded: cut it into parts)");
}

}  // namespace

FileInfo probe(const std::string& path) {
    SF_INFO info;
    auto f = open_for_reading(path, info);
    return FileInfo{info.samplerate, info.channels, static_cast<long long>(info.frames), describe_format(info)};
}

std::vector<float> resample(const std::vector<float>& x, int from_rate, int to_rate) {
    if (from_rate == to_rate || x.empty()) return x;
    check_rate("resampling", from_rate);
    check_rate("resampling", to_rate);
    const double ratio = static_cast<double>(to_rate) / from_rate;
    const size_t out_len = static_cast<size_t>(std::llround(x.size() * ratio));
    std::vector<float> y(out_len);
    size_t done = 0;
    soxr_quality_spec_t q = soxr_quality_spec(SOXR_HQ, 0);
    soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
    soxr_error_t err = soxr_oneshot(from_rate, to_rate, 1, x.data(), x.size(), nullptr, y.data(), out_len, &done, &io,
                                    &q, nullptr);
    if (err) throw Error(std::string("resampling failed: ") + err);
    y.resize(done);
    return y;
}

std::vector<float> load_mono(const std::string& path, int target_rate) {
    SF_INFO info;
    auto f = open_for_reading(path, info);
    if (info.channels < 1) throw Error(path + ": invalid channel count " + std::to_string(info.channels));
    check_rate(path, info.samplerate);
    if (header_says_truncated(f.get())) throw Error(path + ": truncated file (the header promises more data than the file holds)");
    // Streams of unknown length report a huge frame count: the cap is then checked while reading.
    const bool length_known = info.frames > 0 && info.frames < SF_COUNT_MAX / 2;
    if (length_known) check_length(path, info.frames, info.samplerate);

    const int ch = info.channels;
    std::vector<float> mono;
    try {
        if (length_known) mono.reserve(static_cast<size_t>(info.frames));
        std::vector<float> block(static_cast<size_t>(4096) * ch);
        for (;;) {
            sf_count_t got = sf_readf_float(f.get(), block.data(), 4096);
            if (got <= 0) break;
            for (sf_count_t i = 0; i < got; ++i) {
                // Average channels in double to keep mono exact for identical channels.
                double s = 0;
                for (int c = 0; c < ch; ++c) s += block[static_cast<size_t>(i) * ch + c];
                mono.push_back(static_cast<float>(s / ch));
            }
            if (!length_known) check_length(path, static_cast<long long>(mono.size()), info.samplerate);
        }
    } catch (const std::bad_alloc&) {
        throw Error(path + ": not enough memory to decode it (" + std::to_string(info.frames) + " frames of " +
                    std::to_string(ch) + " channels)");
    }
    if (sf_error(f.get()) != SF_ERR_NO_ERROR)
        throw Error(path + ": decoding failed (" + std::string(sf_strerror(f.get())) + ")");
    if (info.frames > 0 && static_cast<sf_count_t>(mono.size()) < info.frames)
        throw Error(path + ": truncated file (read " + std::to_string(mono.size()) + " of " +
                    std::to_string(info.frames) + " frames)");
    if (mono.empty()) throw Error(path + ": no samples (empty audio)");
    for (size_t i = 0; i < mono.size(); ++i)
        if (!std::isfinite(mono[i]))
            throw Error(path + ": contains NaN or Inf samples (first at frame " + std::to_string(i) + ")");
    // Float files may go past full scale, but not by this much: such values are integers stored as floats, or garbage,
    // and their spectra would overflow single precision in the features of either front-end.
    for (size_t i = 0; i < mono.size(); ++i)
        if (std::fabs(mono[i]) > kMaxAmplitude)
            throw Error(path + ": sample " + std::to_string(mono[i]) + " at frame " + std::to_string(i) +
                        " is far outside [-1, 1] (at most " + std::to_string(static_cast<long long>(kMaxAmplitude)) +
                        " is read; rescale the file)");
    if (info.samplerate != target_rate) {
        try {
            mono = resample(mono, info.samplerate, target_rate);
        } catch (const std::bad_alloc&) {
            throw Error(path + ": not enough memory to resample it to " + std::to_string(target_rate) + " Hz");
        } catch (const Error& e) {
            throw Error(path + ": " + e.what());
        }
    }
    return mono;
}

void write_wav(const std::string& path, const float* samples, size_t frames, int sample_rate, int channels) {
    fsutil::write_atomically(path, [&](const std::string& tmp) {
        SF_INFO info{};
        info.samplerate = sample_rate;
        info.channels = channels;
        info.format = SF_FORMAT_WAV | SF_FORMAT_FLOAT;
        SNDFILE* f = sf_open(tmp.c_str(), SFM_WRITE, &info);
        if (!f) throw Error(path + ": cannot open for writing (" + sf_strerror(nullptr) + ")");
        SndfileHandle h(f);
        sf_count_t n = sf_writef_float(f, samples, static_cast<sf_count_t>(frames));
        if (n != static_cast<sf_count_t>(frames)) throw Error(path + ": write failed (disk full?)");
    });
}

}  // namespace cocola::audio
