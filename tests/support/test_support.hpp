// Helpers shared by the test suites: data directory lookup and deterministic random data.
#pragma once

#include <cstdlib>
#include <random>
#include <string>
#include <sys/stat.h>

namespace bpuq_test {

/// BPUQ_DATA_DIR, or ../shared/data beside the source tree.
inline std::string data_dir() {
    const char* env = std::getenv("BPUQ_DATA_DIR");
    return env && *env ? std::string(env) : std::string(BPUQ_DEFAULT_DATA_DIR);
}

inline bool path_exists(const std::string& p) {
    struct stat st;
    return ::stat(p.c_str(), &st) == 0;
}

/// Fixed-seed generator so failures reproduce.
inline std::mt19937_64& rng() {
    static thread_local std::mt19937_64 g(0xB0B0u);
    return g;
}

}  // namespace bpuq_test
