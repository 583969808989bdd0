// `cocola train --processes N`: data-parallel training on this machine, N ranks of one run as N processes of
// this same program (the command line as given, plus --world-size/--rank/--master and a share of the cores).
#pragma once
#include <string>
#include <vector>

namespace cocola::cli {

// This process's command line (argv), read from /proc/self/cmdline. Throws cocola::Error when unreadable.
std::vector<std::string> own_command_line();

// Starts `processes` copies of `args` (args[0] the program, `drop_flag` and its value removed) as ranks 0..N-1 on
// a free loopback port, each with `--threads cores / N` unless --threads was given, forwards Ctrl-C/SIGTERM to
// them, and waits. When one fails, the others are stopped (a rank still waiting for the group would otherwise
// wait out its timeout). Returns 0 when all succeeded, else the first failure's exit code (128 + signal when
// killed).
int run_local_processes(int processes, std::vector<std::string> args, const std::string& drop_flag);

}  // namespace cocola::cli
