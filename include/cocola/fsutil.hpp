// Small file-system helpers shared by every writer: atomic writes so a crash never leaves a half-written file.
#pragma once
#include <functional>
#include <string>

namespace cocola::fsutil {

// Calls write(tmp_path) and then renames tmp_path over `path`. On any exception the temp file is removed. It also
// removes temp files of the same path (PATH.tmp.PID) that writers killed mid-write left behind.
void write_atomically(const std::string& path, const std::function<void(const std::string& tmp_path)>& write);

// Writes `bytes` to `path` atomically.
void write_file_atomically(const std::string& path, const std::string& bytes);

// The file name without directory and last extension ("a/b/c.wav" -> "c").
std::string stem(const std::string& path);

}  // namespace cocola::fsutil
