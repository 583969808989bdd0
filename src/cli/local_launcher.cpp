#include "cli/local_launcher.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <fstream>
#include <iostream>
#include <iterator>
#include <thread>

#include "cocola/error.hpp"

namespace cocola::cli {
namespace {

std::vector<pid_t> g_children;
volatile std::sig_atomic_t g_interrupted = 0;

void forward_signal(int sig) {
    g_interrupted = 1;
    for (pid_t p : g_children)
        if (p > 0) kill(p, sig);  // never kill(-1): that signals every process of the user
}

// A port the kernel has free now on loopback (rank 0 binds it a moment later).
int free_loopback_port() {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) throw Error("--processes: cannot open a socket to find a free port");
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof(a);
    const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
                    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0;
    close(fd);
    if (!ok) throw Error("--processes: no free loopback port");
    return ntohs(a.sin_port);
}

int exit_code(int status) {
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return 1;
}

}  // namespace

std::vector<std::string> own_command_line() {
    std::ifstream in("/proc/self/cmdline", std::ios::binary);
    const std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (!in.eof() && !in.good()) throw Error("/proc/self/cmdline: cannot read this process's command line");
    std::vector<std::string> args;
    size_t start = 0;
    for (size_t i = 0; i < all.size(); ++i)
        if (all[i] == '\0') {
            args.push_back(all.substr(start, i - start));
            start = i + 1;
        }
    if (args.empty()) throw Error("/proc/self/cmdline: empty");
    return args;
}

int run_local_processes(int processes, std::vector<std::string> args, const std::string& drop_flag) {
    // The launcher's own flag (and its value) goes; the ranks get theirs.
    for (size_t i = 1; i < args.size();) {
        if (args[i] == drop_flag)
            args.erase(args.begin() + static_cast<long>(i), args.begin() + static_cast<long>(std::min(i + 2, args.size())));
        else if (args[i].rfind(drop_flag + "=", 0) == 0)
            args.erase(args.begin() + static_cast<long>(i));
        else
            ++i;
    }
    const bool threads_given = std::any_of(args.begin(), args.end(), [](const std::string& a) {
        return a == "--threads" || a.rfind("--threads=", 0) == 0;
    });
    if (!threads_given) {
        // Each rank gets its share of the cores (a global option: before the subcommand).
        const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
        args.insert(args.begin() + 1, {"--threads", std::to_string(std::max(1u, cores / static_cast<unsigned>(processes)))});
    }
    const std::string master = "127.0.0.1:" + std::to_string(free_loopback_port());
    std::cerr << "cocola: " << processes << " local processes, ranks meet at " << master << "\n";

    struct sigaction sa{};
    sa.sa_handler = forward_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    g_children.reserve(static_cast<size_t>(processes));  // the signal handler reads it: no reallocation
    for (int r = 0; r < processes; ++r) {
        std::vector<std::string> a = args;
        a.insert(a.end(), {"--world-size", std::to_string(processes), "--rank", std::to_string(r), "--master", master});
        std::vector<char*> argv;
        for (auto& s : a) argv.push_back(s.data());
        argv.push_back(nullptr);
        const pid_t pid = fork();
        if (pid < 0) {
            forward_signal(SIGTERM);
            throw Error("--processes: fork failed");
        }
        if (pid == 0) {
            // A terminal's Ctrl-C reaches every process of the group; the launcher forwards it too, so a
            // rank sees it once or twice, which stops it the same way.
            execv("/proc/self/exe", argv.data());
            std::perror("cocola: --processes: exec");
            _exit(127);
        }
        g_children.push_back(pid);
    }

    int result = 0;
    size_t running = g_children.size();
    auto failed_at = std::chrono::steady_clock::time_point{};
    bool killed = false;
    while (running > 0) {
        int status = 0;
        const pid_t p = waitpid(-1, &status, WNOHANG);
        if (p > 0) {
            const auto it = std::find(g_children.begin(), g_children.end(), p);
            if (it == g_children.end()) continue;
            *it = -1;
            --running;
            const int code = exit_code(status);
            if (code != 0 && result == 0) {
                result = code;
                if (running > 0 && !g_interrupted) {
                    // A rank that failed leaves the others waiting on it: ask them to stop, then make them.
                    for (pid_t c : g_children)
                        if (c > 0) kill(c, SIGTERM);
                    failed_at = std::chrono::steady_clock::now();
                }
            }
            continue;
        }
        if (p < 0 && errno != EINTR) break;
        if (result != 0 && !killed && std::chrono::steady_clock::now() - failed_at > std::chrono::seconds(10)) {
            for (pid_t c : g_children)
                if (c > 0) kill(c, SIGKILL);
            killed = true;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return result;
}

}  // namespace cocola::cli
