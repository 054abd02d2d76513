// Atomic file output: write to a temporary file beside the target, then rename over it, so an
// interrupted or failed run never leaves a truncated artifact that looks complete.
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "../core/error.hpp"

BPUQ_NAMESPACE_BEGIN
namespace io {

/// Writes `size` bytes to `path` atomically (temporary "<path>.tmp.<pid-ish>" + rename).
inline void write_file_atomic(const std::string& path, const void* data, std::size_t size) {
    namespace fs = std::filesystem;
    const fs::path target(path);
    if (target.has_parent_path()) {
        std::error_code ec;
        fs::create_directories(target.parent_path(), ec);
        BPUQ_CHECK(!ec, "io.write", "cannot create folder '" + target.parent_path().string() + "': " + ec.message());
    }
    const std::string tmp = path + ".tmp";
    {
        std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
        BPUQ_CHECK(f.good(), "io.write", "cannot create '" + tmp + "'");
        f.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
        f.flush();
        if (!f.good()) {
            f.close();
            std::remove(tmp.c_str());
            BPUQ_THROW("io.write", "failed writing '" + tmp + "' (disk full?)");
        }
    }
    std::error_code ec;
    fs::rename(tmp, target, ec);
    if (ec) {
        std::remove(tmp.c_str());
        BPUQ_THROW("io.write", "cannot move '" + tmp + "' to '" + path + "': " + ec.message());
    }
}

inline void write_file_atomic(const std::string& path, const std::string& text) {
    write_file_atomic(path, text.data(), text.size());
}
inline void write_file_atomic(const std::string& path, const std::vector<std::uint8_t>& bytes) {
    write_file_atomic(path, bytes.data(), bytes.size());
}

}  // namespace io
BPUQ_NAMESPACE_END
