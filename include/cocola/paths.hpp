// Where shipped weights are found, for every program that links the library (the CLI, the Python module, benches).
#pragma once
#include <string>

namespace cocola::paths {

// models/<name>.safetensors of this installation, or "" when none ships. Looked up, in order, next to the running
// executable (../share/cocola/models, ../models), under the install prefix (share/cocola/models) and in the source
// tree the library was built from (models/).
std::string shipped_model(const std::string& name);

// The default COCOLA model: $COCOLA_MODEL when set, else the shipped cocola_default; "" when there is none.
std::string default_cocola_model();

}  // namespace cocola::paths
