// A main() for the fuzz targets where libFuzzer is not used (GCC builds, the test suite, sanitizer builds): runs
// every seed once, then mutates seeds at random (bit flips, interesting bytes and integers, inserts, deletes,
// copies, truncation, splicing two seeds) for a time budget, deterministically given -seed. No coverage feedback:
// a smoke test that every build runs; `-DCOCOLA_FUZZ=libfuzzer` with clang builds the same targets for real,
// coverage-guided fuzzing (docs/fuzzing.md).
//
//   fuzz_audio [-seconds N] [-seed S] [-max_len BYTES] [-timeout SECONDS] SEED_FILE_OR_DIR...
//
// An input that crashes, trips a sanitizer or runs past -timeout is written to crash-<target>.bin (or
// timeout-<target>.bin) in the working folder before the process dies: rerun the target on that file to reproduce.
#include <fcntl.h>
#include <signal.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
extern "C" void __sanitizer_set_death_callback(void (*callback)(void)) __attribute__((weak));

namespace {

const std::vector<uint8_t>* current = nullptr;  // the input being run, for the crash handlers
char crash_path[256] = "crash-input.bin";
char timeout_path[256] = "timeout-input.bin";

void dump(const char* path) {
    if (!current) return;
    const int fd = ::open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return;
    size_t done = 0;
    while (done < current->size()) {
        const ssize_t n = ::write(fd, current->data() + done, current->size() - done);
        if (n <= 0) break;
        done += static_cast<size_t>(n);
    }
    ::close(fd);
    const char msg[] = "fuzz: the input that failed is in ";
    (void)!::write(2, msg, sizeof(msg) - 1);
    (void)!::write(2, path, std::strlen(path));
    (void)!::write(2, "\n", 1);
}

void on_crash(int sig) {
    dump(crash_path);
    ::signal(sig, SIG_DFL);
    ::raise(sig);
}
void on_timeout(int) {
    dump(timeout_path);
    const char msg[] = "fuzz: an input ran past -timeout\n";
    (void)!::write(2, msg, sizeof(msg) - 1);
    ::_exit(3);
}
void on_sanitizer_death() { dump(crash_path); }

std::vector<uint8_t> read_file(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)), {});
}

void mutate(std::vector<uint8_t>& x, const std::vector<std::vector<uint8_t>>& seeds, std::mt19937_64& rng,
            size_t max_len) {
    auto pick = [&](size_t n) { return static_cast<size_t>(rng() % std::max<size_t>(1, n)); };
    static const uint8_t bytes[] = {0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff, 0x10, 0x20, 0x40};
    static const uint32_t ints[] = {0u, 1u, 2u, 0x7fu, 0x80u, 0xffu, 0x100u, 0x7fffu, 0x8000u, 0xffffu, 0x10000u,
                                    0x7fffffffu, 0x80000000u, 0xfffffffeu, 0xffffffffu, 16000u, 44100u};
    const int rounds = 1 + static_cast<int>(pick(8));
    for (int r = 0; r < rounds; ++r) {
        switch (pick(9)) {
            case 0:  // flip a bit
                if (!x.empty()) x[pick(x.size())] ^= static_cast<uint8_t>(1u << pick(8));
                break;
            case 1:  // an interesting byte
                if (!x.empty()) x[pick(x.size())] = bytes[pick(sizeof(bytes))];
                break;
            case 2: {  // an interesting 32-bit integer, either byte order (sizes, rates, counts)
                if (x.size() < 4) break;
                uint32_t v = ints[pick(sizeof(ints) / sizeof(ints[0]))];
                if (rng() & 1) v = __builtin_bswap32(v);
                std::memcpy(x.data() + pick(x.size() - 3), &v, 4);
                break;
            }
            case 3: {  // insert random bytes
                const size_t n = 1 + pick(16), at = pick(x.size() + 1);
                std::vector<uint8_t> ins(n);
                for (auto& b : ins) b = static_cast<uint8_t>(rng());
                x.insert(x.begin() + static_cast<long>(at), ins.begin(), ins.end());
                break;
            }
            case 4: {  // delete a range
                if (x.empty()) break;
                const size_t at = pick(x.size()), n = 1 + pick(std::min<size_t>(64, x.size() - at));
                x.erase(x.begin() + static_cast<long>(at), x.begin() + static_cast<long>(at + n));
                break;
            }
            case 5: {  // copy a range over another place
                if (x.size() < 2) break;
                const size_t from = pick(x.size()), to = pick(x.size());
                const size_t n = 1 + pick(std::min(x.size() - from, x.size() - to));
                std::memmove(x.data() + to, x.data() + from, n);
                break;
            }
            case 6:  // truncate
                if (!x.empty()) x.resize(pick(x.size()));
                break;
            case 7: {  // splice: the head of this input, the tail of another seed
                const auto& other = seeds[pick(seeds.size())];
                if (other.empty()) break;
                const size_t cut = pick(x.size() + 1), from = pick(other.size());
                x.resize(cut);
                x.insert(x.end(), other.begin() + static_cast<long>(from), other.end());
                break;
            }
            default:  // random bytes in a small window
                for (size_t k = 0, at = pick(x.size()); k < 4 && at + k < x.size(); ++k) x[at + k] = static_cast<uint8_t>(rng());
        }
    }
    if (x.size() > max_len) x.resize(max_len);
}

}  // namespace

int main(int argc, char** argv) {
    double seconds = 10;
    uint64_t seed = 1;
    size_t max_len = 1 << 20;
    unsigned timeout = 20;
    std::vector<std::filesystem::path> seed_paths;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> const char* {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "fuzz: %s needs a value\n", a.c_str());
                std::exit(2);
            }
            return argv[++i];
        };
        if (a == "-seconds") seconds = std::atof(value());
        else if (a == "-seed") seed = std::strtoull(value(), nullptr, 10);
        else if (a == "-max_len") max_len = std::strtoull(value(), nullptr, 10);
        else if (a == "-timeout") timeout = static_cast<unsigned>(std::atoi(value()));
        else if (a == "-h" || a == "--help") {
            std::printf("usage: %s [-seconds N] [-seed S] [-max_len BYTES] [-timeout SECONDS] SEED_FILE_OR_DIR...\n", argv[0]);
            return 0;
        } else seed_paths.push_back(a);
    }
    const std::string name = std::filesystem::path(argv[0]).filename().string();
    std::snprintf(crash_path, sizeof(crash_path), "crash-%s.bin", name.c_str());
    std::snprintf(timeout_path, sizeof(timeout_path), "timeout-%s.bin", name.c_str());

    std::vector<std::vector<uint8_t>> seeds;
    for (const auto& p : seed_paths) {
        std::error_code ec;
        if (std::filesystem::is_directory(p, ec)) {
            std::vector<std::filesystem::path> files;
            for (const auto& e : std::filesystem::recursive_directory_iterator(p, ec))
                if (e.is_regular_file()) files.push_back(e.path());
            std::sort(files.begin(), files.end());
            for (const auto& f : files) seeds.push_back(read_file(f));
        } else if (std::filesystem::is_regular_file(p, ec)) {
            seeds.push_back(read_file(p));
        } else {
            std::fprintf(stderr, "fuzz: %s: no such seed file or folder\n", p.c_str());
            return 2;
        }
    }
    if (seeds.empty()) seeds.push_back({});

    for (int sig : {SIGSEGV, SIGABRT, SIGFPE, SIGBUS, SIGILL}) ::signal(sig, on_crash);
    ::signal(SIGALRM, on_timeout);
    if (__sanitizer_set_death_callback) __sanitizer_set_death_callback(on_sanitizer_death);
    auto run = [&](const std::vector<uint8_t>& x) {
        current = &x;
        itimerval t{};
        t.it_value.tv_sec = timeout;
        ::setitimer(ITIMER_REAL, &t, nullptr);
        LLVMFuzzerTestOneInput(x.data(), x.size());
        t.it_value.tv_sec = 0;
        ::setitimer(ITIMER_REAL, &t, nullptr);
        current = nullptr;
    };

    const auto start = std::chrono::steady_clock::now();
    for (const auto& s : seeds) run(s);
    std::mt19937_64 rng(seed);
    size_t runs = seeds.size();
    while (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < seconds) {
        std::vector<uint8_t> x = seeds[rng() % seeds.size()];
        mutate(x, seeds, rng, max_len);
        run(x);
        ++runs;
    }
    const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("%s: %zu inputs (%zu seeds, the rest mutated) in %.1f s, no crash, no sanitizer report, no hang\n",
                name.c_str(), runs, seeds.size(), took);
    return 0;
}
