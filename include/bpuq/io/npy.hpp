// NumPy .npy files: read into and write from bpuq::Tensor (C order, little endian).
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "../core/config.hpp"
#include "../core/dtype.hpp"
#include "../core/error.hpp"
#include "../core/tensor.hpp"

BPUQ_NAMESPACE_BEGIN

namespace io {

namespace detail {

/// "<f4" etc. for the element types bpuq stores in .npy files ('|' for single bytes).
inline const char* npy_descr(DType t) {
    switch (t) {
        case DType::float32: return "<f4";
        case DType::float64: return "<f8";
        case DType::uint8: return "|u1";
        case DType::int8: return "|i1";
        case DType::int16: return "<i2";
        case DType::uint16: return "<u2";
        case DType::int32: return "<i4";
        case DType::uint32: return "<u4";
        case DType::int64: return "<i8";
        case DType::uint64: return "<u8";
        case DType::boolean: return "|b1";
        default: return nullptr;
    }
}

inline bool npy_dtype_from_descr(const std::string& d, DType& out) {
    static const struct { const char* descr; DType t; } table[] = {
        {"<f4", DType::float32}, {"<f8", DType::float64}, {"|u1", DType::uint8},  {"<u1", DType::uint8},
        {"|i1", DType::int8},    {"<i1", DType::int8},    {"<i2", DType::int16},  {"<u2", DType::uint16},
        {"<i4", DType::int32},   {"<u4", DType::uint32},  {"<i8", DType::int64},  {"<u8", DType::uint64},
        {"|b1", DType::boolean},
    };
    for (const auto& e : table)
        if (d == e.descr) {
            out = e.t;
            return true;
        }
    return false;
}

/// Value of `'key': <value>` in the header dict, as the raw text up to the next top-level comma.
inline bool npy_dict_value(const std::string& header, const std::string& key, std::string& value) {
    const std::string pat = "'" + key + "'";
    std::size_t p = header.find(pat);
    if (p == std::string::npos) return false;
    p = header.find(':', p + pat.size());
    if (p == std::string::npos) return false;
    ++p;
    while (p < header.size() && header[p] == ' ') ++p;
    std::size_t end = p;
    int depth = 0;
    while (end < header.size()) {
        char c = header[end];
        if (c == '(') ++depth;
        if (c == ')') {
            if (depth == 0) break;
            --depth;
            if (depth == 0) {
                ++end;
                break;
            }
        }
        if ((c == ',' || c == '}') && depth == 0) break;
        ++end;
    }
    value = header.substr(p, end - p);
    return true;
}

}  // namespace detail

/// Parses a whole .npy image held in memory; `origin` names the file in error messages.
inline Tensor parse_npy(const std::uint8_t* bytes, std::size_t size, const std::string& origin) {
    using namespace detail;
    const std::string where = "npy file '" + origin + "'";
    BPUQ_CHECK(size >= 10 && std::memcmp(bytes, "\x93NUMPY", 6) == 0, "npy.magic",
               where + " does not start with the \\x93NUMPY magic");
    const int major = bytes[6];
    BPUQ_CHECK(major >= 1 && major <= 3, "npy.version",
               where + " has format version " + std::to_string(major) + "; versions 1 to 3 are supported");
    std::size_t header_len = 0, header_start = 0;
    if (major == 1) {
        header_len = std::size_t(bytes[8]) | (std::size_t(bytes[9]) << 8);
        header_start = 10;
    } else {
        BPUQ_CHECK(size >= 12, "npy.truncated", where + " is truncated inside its header length");
        header_len = std::size_t(bytes[8]) | (std::size_t(bytes[9]) << 8) | (std::size_t(bytes[10]) << 16) |
                     (std::size_t(bytes[11]) << 24);
        header_start = 12;
    }
    BPUQ_CHECK(header_len <= size - header_start, "npy.truncated",
               where + " declares a " + std::to_string(header_len) + "-byte header but has only " +
                   std::to_string(size - header_start) + " bytes after the preamble");
    const std::string header(reinterpret_cast<const char*>(bytes + header_start), header_len);

    std::string descr, fortran, shape_text;
    BPUQ_CHECK(npy_dict_value(header, "descr", descr), "npy.header", where + " header has no 'descr': " + header);
    BPUQ_CHECK(npy_dict_value(header, "fortran_order", fortran), "npy.header",
               where + " header has no 'fortran_order': " + header);
    BPUQ_CHECK(npy_dict_value(header, "shape", shape_text), "npy.header", where + " header has no 'shape': " + header);
    if (descr.size() >= 2 && (descr.front() == '\'' || descr.front() == '"')) descr = descr.substr(1, descr.size() - 2);
    DType dtype{};
    BPUQ_CHECK(npy_dtype_from_descr(descr, dtype), "npy.dtype",
               where + " has element type '" + descr +
                   "'; supported: <f4 <f8 |u1 |i1 <i2 <u2 <i4 <u4 <i8 <u8 |b1 (little endian)");
    BPUQ_CHECK(fortran.rfind("False", 0) == 0, "npy.fortran",
               where + " is in Fortran order; only C order is supported (use np.ascontiguousarray)");

    BPUQ_CHECK(shape_text.size() >= 2 && shape_text.front() == '(' && shape_text.back() == ')', "npy.header",
               where + " has a malformed shape '" + shape_text + "'");
    Shape shape;
    {
        const std::string inner = shape_text.substr(1, shape_text.size() - 2);
        std::size_t i = 0;
        while (i < inner.size()) {
            while (i < inner.size() && (inner[i] == ' ' || inner[i] == ',')) ++i;
            if (i >= inner.size()) break;
            std::size_t j = i;
            std::int64_t d = 0;
            while (j < inner.size() && inner[j] >= '0' && inner[j] <= '9') {
                BPUQ_CHECK(d < (std::int64_t(1) << 50), "npy.header", where + " has a dimension too large in " + shape_text);
                d = d * 10 + (inner[j] - '0');
                ++j;
            }
            if (j < inner.size() && inner[j] == 'L') ++j;  // Python 2 longs
            BPUQ_CHECK(j > i && (j == inner.size() || inner[j] == ',' || inner[j] == ' '), "npy.header",
                       where + " has a malformed shape '" + shape_text + "'");
            shape.push_back(d);
            i = j;
        }
    }
    const std::int64_t n = shape_numel(shape);
    const std::size_t payload = size - header_start - header_len;
    const std::size_t elem = dtype_size(dtype);
    BPUQ_CHECK(static_cast<std::uint64_t>(n) <= payload / elem, "npy.truncated",
               where + " has shape " + shape_to_string(shape) + " of " + descr + " (" + std::to_string(n * elem) +
                   " bytes) but only " + std::to_string(payload) + " bytes of data");
    Tensor t(dtype, shape);
    if (t.nbytes()) std::memcpy(t.raw(), bytes + header_start + header_len, t.nbytes());
    return t;
}

/// Reads a .npy file (format 1.0-3.0, C order, little endian).
inline Tensor read_npy(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    BPUQ_CHECK(f.good(), "npy.open", "cannot open npy file '" + path + "'");
    std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    return parse_npy(bytes.data(), bytes.size(), path);
}

/// The .npy image of a tensor (format 1.0, or 2.0 if the header needs it).
inline std::vector<std::uint8_t> serialize_npy(const Tensor& t) {
    const char* descr = detail::npy_descr(t.dtype());
    BPUQ_CHECK(descr != nullptr, "npy.dtype",
               std::string("cannot write a ") + dtype_name(t.dtype()) + " tensor to .npy; convert it to float32 first");
    std::string shape = "(";
    for (std::size_t i = 0; i < t.rank(); ++i) shape += std::to_string(t.dim(i)) + (t.rank() == 1 ? "," : i + 1 < t.rank() ? ", " : "");
    shape += ")";
    std::string header = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
    // Pad with spaces so that the data starts on a 64-byte boundary; newline last.
    const bool v2 = header.size() + 11 > 65535;
    const std::size_t pre = v2 ? 12 : 10;
    std::size_t total = pre + header.size() + 1;
    header.append((64 - total % 64) % 64, ' ');
    header += '\n';
    std::string pre_bytes("\x93NUMPY", 6);
    pre_bytes += char(v2 ? 2 : 1);
    pre_bytes += char(0);
    const std::size_t hl = header.size();
    for (int b = 0; b < (v2 ? 4 : 2); ++b) pre_bytes += char((hl >> (8 * b)) & 0xff);
    pre_bytes += header;
    // one buffer, filled by memcpy (GCC 12 warns spuriously on vector::insert of short arrays)
    std::vector<std::uint8_t> out(pre_bytes.size() + t.nbytes());
    std::memcpy(out.data(), pre_bytes.data(), pre_bytes.size());
    if (t.nbytes()) std::memcpy(out.data() + pre_bytes.size(), t.raw(), t.nbytes());
    return out;
}

/// Writes a tensor as a .npy file.
inline void write_npy(const std::string& path, const Tensor& t) {
    const std::vector<std::uint8_t> bytes = serialize_npy(t);
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    BPUQ_CHECK(f.good(), "npy.open", "cannot create npy file '" + path + "'");
    f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    BPUQ_CHECK(f.good(), "npy.write", "failed writing npy file '" + path + "'");
}

}  // namespace io

BPUQ_NAMESPACE_END
