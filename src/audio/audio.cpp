// Audio decoding with libsndfile and resampling with soxr.
#include "cocola/audio.hpp"

#include <fcntl.h>
#include <sndfile.h>
#include <soxr.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <new>
#include <sstream>

#include "cocola/error.hpp"
#include "cocola/fsutil.hpp"

namespace cocola::audio {
namespace {

struct SndfileCloser {
    void operator()(SNDFILE* f) const { sf_close(f); }
};
using SndfileHandle = std::unique_ptr<SNDFILE, SndfileCloser>;

// libsndfile's MPEG decoder (libmpg123) prints its own notes and warnings to stderr ("Note: Illegal Audio-MPEG-Header
// ... Trying to resync"), before and beside our one-line error. While an MPEG file is opened and decoded, stderr
// points at /dev/null; one file at a time, since the redirection is process-wide.
bool looks_like_mpeg(const std::string& path) {
    std::string ext = std::filesystem::path(path).extension().string();
    for (auto& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (ext == ".mp3" || ext == ".mp2" || ext == ".mp1" || ext == ".mpga") return true;
    // Names that say another format are taken at their word: no second open of every WAV of a dataset.
    if (ext == ".wav" || ext == ".flac" || ext == ".ogg" || ext == ".oga" || ext == ".aif" || ext == ".aiff") return false;
    unsigned char head[3] = {0, 0, 0};
    if (FILE* f = std::fopen(path.c_str(), "rb")) {
        const size_t n = std::fread(head, 1, 3, f);
        std::fclose(f);
        if (n == 3 && head[0] == 'I' && head[1] == 'D' && head[2] == '3') return true;   // an ID3 tag
        if (n >= 2 && head[0] == 0xff && (head[1] & 0xe0) == 0xe0) return true;          // an MPEG frame sync
    }
    return false;
}

class QuietStderr {
   public:
    explicit QuietStderr(bool active) {
        if (!active) return;
        lock_ = std::unique_lock<std::mutex>(mutex());
        std::fflush(stderr);
        saved_ = ::dup(2);
        const int null = ::open("/dev/null", O_WRONLY);
        if (saved_ >= 0 && null >= 0) ::dup2(null, 2);
        if (null >= 0) ::close(null);
    }
    ~QuietStderr() {
        if (saved_ < 0) return;
        std::fflush(stderr);
        ::dup2(saved_, 2);
        ::close(saved_);
    }
    QuietStderr(const QuietStderr&) = delete;
    QuietStderr& operator=(const QuietStderr&) = delete;

   private:
    static std::mutex& mutex() {
        static std::mutex m;
        return m;
    }
    std::unique_lock<std::mutex> lock_;
    int saved_ = -1;
};

SndfileHandle open_for_reading(const std::string& path, SF_INFO& info) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) throw Error(path + ": no such file");
    if (std::filesystem::is_directory(path, ec)) throw Error(path + ": is a directory, not an audio file");
    std::memset(&info, 0, sizeof(info));
    SNDFILE* f = sf_open(path.c_str(), SFM_READ, &info);
    if (!f) {
        // For a file that is there, libsndfile's "File does not exist or is not a regular file" misleads: it
        // says that for data it cannot parse.
        std::string why = sf_strerror(nullptr);
        if (why.find("does not exist") != std::string::npos || why.empty())
            why = "its format is not recognised, or its data is damaged";
        throw Error(path + ": not a readable audio file (" + why + ")");
    }
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

std::string log_of(SNDFILE* f) {
    char log[8192] = {0};
    sf_command(f, SFC_GET_LOG_INFO, log, sizeof(log) - 1);
    return log;
}

// libsndfile accepts a WAV/AIFF whose data chunk is cut short: it notes that in its log ("data : 64000 (should be
// 19956)") and reads what is there. We refuse such files, since a silently shortened stem would corrupt a dataset
// or a score. Its note that a chunk "should be an even number of bytes" is about RIFF padding, not missing data.
bool header_says_truncated(const std::string& log) {
    std::istringstream lines(log);
    for (std::string line; std::getline(lines, line);) {
        if (line.find("even number of bytes") != std::string::npos) continue;
        if (line.find("truncated") != std::string::npos || line.find("should be") != std::string::npos ||
            line.find("Data length in header") != std::string::npos)
            return true;
    }
    return false;
}

// Bytes of a last, partial frame in a WAV data chunk (its size not a multiple of the block align): libsndfile
// decodes the whole frames and drops them. 0 when the log does not tell.
long long partial_frame_bytes(const std::string& log) {
    long long data = -1, align = -1;
    std::istringstream lines(log);
    for (std::string line; std::getline(lines, line);) {
        auto value_after = [&](const char* key) -> long long {
            const auto k = line.find(key);
            if (k == std::string::npos) return -1;
            const auto colon = line.find(':', k);
            if (colon == std::string::npos) return -1;
            try {
                return std::stoll(line.substr(colon + 1));
            } catch (const std::exception&) {
                return -1;
            }
        };
        if (line.rfind("data :", 0) == 0 && data < 0) data = value_after("data");
        if (line.find("Block Align") != std::string::npos && align < 0) align = value_after("Block Align");
    }
    return data > 0 && align > 0 ? data % align : 0;
}

std::mutex warning_mutex;
WarningHandler warning_handler;

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

// What every mono signal passes before it is used, from a file or from memory: not empty, finite, within
// kMaxAmplitude, then resampled to target_rate. Errors name `what` (the file, or the caller's name for the array).
std::vector<float> check_and_resample(std::vector<float> mono, int rate, const std::string& path, int target_rate) {
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
    if (rate != target_rate) {
        try {
            mono = resample(mono, rate, target_rate);
        } catch (const std::bad_alloc&) {
            throw Error(path + ": not enough memory to resample it to " + std::to_string(target_rate) + " Hz");
        } catch (const Error& e) {
            throw Error(path + ": " + e.what());
        }
    }
    return mono;
}

}  // namespace

void set_warning_handler(WarningHandler handler) {
    std::lock_guard<std::mutex> lock(warning_mutex);
    warning_handler = std::move(handler);
}

void warn(const std::string& message) {
    std::lock_guard<std::mutex> lock(warning_mutex);
    if (warning_handler) warning_handler(message);
}

FileInfo probe(const std::string& path) {
    QuietStderr quiet(looks_like_mpeg(path));
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
    // Declared before the decoder so that it outlives it (libmpg123 may print when the file is closed, too).
    const QuietStderr quiet(looks_like_mpeg(path));
    SF_INFO info;
    auto f = open_for_reading(path, info);
    if (info.channels < 1) throw Error(path + ": invalid channel count " + std::to_string(info.channels));
    check_rate(path, info.samplerate);
    const std::string log = log_of(f.get());
    if (header_says_truncated(log)) throw Error(path + ": truncated file (the header promises more data than the file holds)");
    if (const long long extra = partial_frame_bytes(log))
        warn(path + ": the data chunk ends " + std::to_string(extra) + " bytes into a frame; the whole frames are decoded");
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
    return check_and_resample(std::move(mono), info.samplerate, path, target_rate);
}

std::vector<float> mono_from_planar(const float* data, int channels, long long frames, int rate, const std::string& what,
                                    int target_rate) {
    if (channels < 1) throw Error(what + ": invalid channel count " + std::to_string(channels));
    check_rate(what, rate);
    check_length(what, frames, rate);
    std::vector<float> mono;
    try {
        mono.resize(static_cast<size_t>(std::max(0LL, frames)));
    } catch (const std::bad_alloc&) {
        throw Error(what + ": not enough memory for " + std::to_string(frames) + " frames");
    }
    const size_t n = mono.size();
    // Channels averaged in double, in channel order: the same sums load_mono forms from an interleaved file.
    for (size_t i = 0; i < n; ++i) {
        double s = 0;
        for (int c = 0; c < channels; ++c) s += data[static_cast<size_t>(c) * n + i];
        mono[i] = static_cast<float>(s / channels);
    }
    return check_and_resample(std::move(mono), rate, what, target_rate);
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
