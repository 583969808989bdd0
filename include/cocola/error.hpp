// Every failure the library reports is a cocola::Error whose message names the file (or thing) and the problem.
// The library never prints or exits; the CLI turns these into one-line messages and a non-zero exit code.
#pragma once
#include <stdexcept>
#include <string>

namespace cocola {

struct Error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

}  // namespace cocola
