// The .bpuq binary format: versioned, little-endian on every host, CRC-checked, and a loader that
// validates every count, index and size so a corrupt or truncated file is a Status, never a crash.
//
// Layout (docs/PROGRAM.md):
//   0  "BPUQPROG"   8-byte magic
//   8  u16 major, u16 minor             format version (major must match, minor may be newer)
//   12 u32 flags                         0
//   16 u64 payload size
//   24 u32 CRC-32 (IEEE) of the payload
//   28 u32 reserved                      0
//   32 payload: metadata, tensors, inputs, outputs, nodes (see serialize_program)
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "program.hpp"

BPUQ_NAMESPACE_BEGIN
namespace emul {

constexpr std::uint16_t kProgramFormatMajor = 1;
constexpr std::uint16_t kProgramFormatMinor = 0;
constexpr std::size_t kProgramHeaderSize = 32;
constexpr char kProgramMagic[8] = {'B', 'P', 'U', 'Q', 'P', 'R', 'O', 'G'};
constexpr std::size_t kMaxRank = 8;

// DType numbering is part of the file format: never reorder the enum.
static_assert(static_cast<int>(DType::float32) == 0 && static_cast<int>(DType::int8) == 4 &&
                  static_cast<int>(DType::uint8) == 5 && static_cast<int>(DType::int16) == 6 &&
                  static_cast<int>(DType::int32) == 8 && static_cast<int>(DType::int64) == 10 &&
                  static_cast<int>(DType::boolean) == 12,
              "bpuq: DType values are stored in .bpuq files and must not change");

namespace detail {

inline std::uint32_t crc32(const std::uint8_t* p, std::size_t n) noexcept {
    struct Table {
        std::array<std::uint32_t, 256> t{};
        Table() {
            for (std::uint32_t i = 0; i < 256; ++i) {
                std::uint32_t c = i;
                for (int k = 0; k < 8; ++k) c = (c & 1u) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
                t[i] = c;
            }
        }
    };
    static const Table table;  // function-local: initialized once, thread-safe, no ODR issue
    std::uint32_t c = 0xFFFFFFFFu;
    for (std::size_t i = 0; i < n; ++i) c = table.t[(c ^ p[i]) & 0xFFu] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

/// Appends little-endian values regardless of the host's byte order.
class ByteWriter {
public:
    std::vector<std::uint8_t> bytes;
    void u8(std::uint8_t v) { bytes.push_back(v); }
    void u16(std::uint16_t v) { put(v, 2); }
    void u32(std::uint32_t v) { put(v, 4); }
    void u64(std::uint64_t v) { put(v, 8); }
    void i32(std::int32_t v) { put(static_cast<std::uint32_t>(v), 4); }
    void i64(std::int64_t v) { put(static_cast<std::uint64_t>(v), 8); }
    void f32(float v) {
        std::uint32_t b;
        std::memcpy(&b, &v, 4);
        put(b, 4);
    }
    void str(const std::string& s) {
        u32(static_cast<std::uint32_t>(s.size()));
        bytes.insert(bytes.end(), s.begin(), s.end());
    }
    void align8() {
        while (bytes.size() % 8) bytes.push_back(0);
    }

private:
    void put(std::uint64_t v, int n) {
        for (int i = 0; i < n; ++i) bytes.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
    }
};

/// Bounds-checked little-endian reader: after any failure ok() is false and reads return 0.
class ByteReader {
public:
    ByteReader(const std::uint8_t* p, std::size_t n, std::size_t base) : p_(p), n_(n), base_(base) {}
    bool ok() const { return ok_; }
    std::size_t position() const { return base_ + pos_; }
    std::size_t remaining() const { return ok_ ? n_ - pos_ : 0; }
    bool need(std::size_t k) {
        if (!ok_ || k > n_ - pos_) ok_ = false;
        return ok_;
    }
    std::uint8_t u8() { return static_cast<std::uint8_t>(get(1)); }
    std::uint16_t u16() { return static_cast<std::uint16_t>(get(2)); }
    std::uint32_t u32() { return static_cast<std::uint32_t>(get(4)); }
    std::uint64_t u64() { return get(8); }
    std::int32_t i32() { return static_cast<std::int32_t>(static_cast<std::uint32_t>(get(4))); }
    std::int64_t i64() { return static_cast<std::int64_t>(get(8)); }
    float f32() {
        const std::uint32_t b = static_cast<std::uint32_t>(get(4));
        float v;
        std::memcpy(&v, &b, 4);
        return v;
    }
    bool str(std::string& out, std::size_t max_len = 1 << 20) {
        const std::uint32_t len = u32();
        if (len > max_len || !need(len)) return ok_ = false;
        out.assign(reinterpret_cast<const char*>(p_ + pos_), len);
        pos_ += len;
        return true;
    }
    bool raw(std::vector<std::uint8_t>& out, std::size_t len) {
        if (!need(len)) return false;
        out.assign(p_ + pos_, p_ + pos_ + len);
        pos_ += len;
        return true;
    }
    void align8() {
        const std::size_t pad = (8 - (base_ + pos_) % 8) % 8;
        if (need(pad)) pos_ += pad;
    }

private:
    std::uint64_t get(int k) {
        if (!need(static_cast<std::size_t>(k))) return 0;
        std::uint64_t v = 0;
        for (int i = 0; i < k; ++i) v |= static_cast<std::uint64_t>(p_[pos_ + static_cast<std::size_t>(i)]) << (8 * i);
        pos_ += static_cast<std::size_t>(k);
        return v;
    }
    const std::uint8_t* p_;
    std::size_t n_;
    std::size_t base_;
    std::size_t pos_ = 0;
    bool ok_ = true;
};

}  // namespace detail

/// Serializes a program into the .bpuq byte image.
inline std::vector<std::uint8_t> serialize_program(const Program& prog) {
    detail::ByteWriter w;
    // header placeholder; payload offsets are relative to the file start for alignment
    w.bytes.resize(kProgramHeaderSize, 0);
    w.u32(static_cast<std::uint32_t>(prog.metadata.size()));
    for (const auto& kv : prog.metadata) {
        w.str(kv.first);
        w.str(kv.second);
    }
    w.u32(static_cast<std::uint32_t>(prog.tensors.size()));
    for (const auto& t : prog.tensors) {
        w.str(t.name);
        w.u8(static_cast<std::uint8_t>(t.dtype));
        w.u8(static_cast<std::uint8_t>(t.shape.size()));
        w.u8(static_cast<std::uint8_t>(t.quant.bits));
        w.u8(t.is_constant ? 1 : 0);
        w.i32(t.quant.axis);
        for (auto d : t.shape) w.i64(d);
        w.u32(static_cast<std::uint32_t>(t.quant.scales.size()));
        for (float s : t.quant.scales) w.f32(s);
        for (std::size_t i = 0; i < t.quant.scales.size(); ++i)
            w.i32(i < t.quant.zero_points.size() ? t.quant.zero_points[i] : 0);
        if (t.is_constant) {
            w.u64(t.data.size());
            w.align8();  // constant data is 8-byte aligned in the file for zero-copy use
            w.bytes.insert(w.bytes.end(), t.data.begin(), t.data.end());
        }
    }
    w.u32(static_cast<std::uint32_t>(prog.inputs.size()));
    for (auto id : prog.inputs) w.i32(id);
    w.u32(static_cast<std::uint32_t>(prog.outputs.size()));
    for (auto id : prog.outputs) w.i32(id);
    w.u32(static_cast<std::uint32_t>(prog.nodes.size()));
    for (const auto& n : prog.nodes) {
        w.str(n.name);
        w.str(n.op);
        w.u32(static_cast<std::uint32_t>(n.inputs.size()));
        for (auto id : n.inputs) w.i32(id);
        w.u32(static_cast<std::uint32_t>(n.outputs.size()));
        for (auto id : n.outputs) w.i32(id);
        w.u32(static_cast<std::uint32_t>(n.attrs.size()));
        for (const auto& kv : n.attrs) {
            w.str(kv.first);
            w.u8(static_cast<std::uint8_t>(kv.second.kind));
            switch (kv.second.kind) {
                case AttrValue::Kind::ints:
                    w.u32(static_cast<std::uint32_t>(kv.second.ints.size()));
                    for (auto v : kv.second.ints) w.i64(v);
                    break;
                case AttrValue::Kind::floats:
                    w.u32(static_cast<std::uint32_t>(kv.second.floats.size()));
                    for (auto v : kv.second.floats) w.f32(v);
                    break;
                case AttrValue::Kind::string: w.str(kv.second.str); break;
            }
        }
    }
    // header
    const std::uint64_t payload = w.bytes.size() - kProgramHeaderSize;
    const std::uint32_t crc = detail::crc32(w.bytes.data() + kProgramHeaderSize, static_cast<std::size_t>(payload));
    detail::ByteWriter h;
    for (char c : kProgramMagic) h.u8(static_cast<std::uint8_t>(c));
    h.u16(kProgramFormatMajor);
    h.u16(kProgramFormatMinor);
    h.u32(0);
    h.u64(payload);
    h.u32(crc);
    h.u32(0);
    std::memcpy(w.bytes.data(), h.bytes.data(), kProgramHeaderSize);
    return w.bytes;
}

/// Parses and validates a .bpuq image. On failure returns a non-ok Status and, if `error` is
/// given, a sentence saying what is wrong and at which byte offset.
inline Status deserialize_program(const std::uint8_t* data, std::size_t size, Program& out, std::string* error = nullptr) {
    auto fail = [&](Status s, const std::string& what) {
        if (error) *error = what;
        return s;
    };
    if (size < kProgramHeaderSize)
        return fail(Status::corrupt_data, "file is " + std::to_string(size) + " bytes, shorter than the 32-byte header");
    if (std::memcmp(data, kProgramMagic, 8) != 0) return fail(Status::corrupt_data, "not a bpuq program (bad magic bytes)");
    detail::ByteReader h(data + 8, kProgramHeaderSize - 8, 8);
    const std::uint16_t major = h.u16(), minor = h.u16();
    const std::uint32_t flags = h.u32();
    const std::uint64_t payload = h.u64();
    const std::uint32_t crc = h.u32();
    if (major != kProgramFormatMajor)
        return fail(Status::unsupported, "format version " + std::to_string(major) + "." + std::to_string(minor) +
                                             " is not readable by this build (reads " + std::to_string(kProgramFormatMajor) + ".x)");
    if (flags != 0) return fail(Status::unsupported, "unknown header flags " + std::to_string(flags));
    if (payload != size - kProgramHeaderSize)
        return fail(Status::corrupt_data, "header announces " + std::to_string(payload) + " payload bytes but the file has " +
                                              std::to_string(size - kProgramHeaderSize) + " (truncated or padded file)");
    if (detail::crc32(data + kProgramHeaderSize, static_cast<std::size_t>(payload)) != crc)
        return fail(Status::corrupt_data, "payload checksum mismatch (the file is corrupt)");

    detail::ByteReader r(data + kProgramHeaderSize, static_cast<std::size_t>(payload), kProgramHeaderSize);
    Program p;
    auto bad = [&](const std::string& what) {
        return fail(Status::corrupt_data, what + " (at byte " + std::to_string(r.position()) + ")");
    };
    // every element of a list takes at least one byte, so counts above the remaining size are lies
    auto count = [&](std::size_t min_bytes_each) -> std::uint32_t {
        const std::uint32_t c = r.u32();
        if (!r.ok() || static_cast<std::uint64_t>(c) * min_bytes_each > r.remaining()) {
            r.need(r.remaining() + 1);  // poison the reader
            return 0;
        }
        return c;
    };
    const std::uint32_t n_meta = count(8);
    for (std::uint32_t i = 0; i < n_meta && r.ok(); ++i) {
        std::string k, v;
        r.str(k);
        r.str(v);
        p.metadata[k] = v;
    }
    if (!r.ok()) return bad("truncated metadata");
    const std::uint32_t n_tensors = count(12);
    if (!r.ok()) return bad("bad tensor count");
    p.tensors.resize(n_tensors);
    for (std::uint32_t i = 0; i < n_tensors; ++i) {
        ProgramTensor& t = p.tensors[i];
        r.str(t.name);
        const std::uint8_t dt = r.u8(), rank = r.u8(), bits = r.u8(), is_const = r.u8();
        t.quant.axis = r.i32();
        if (!r.ok()) return bad("truncated tensor " + std::to_string(i));
        if (dt > static_cast<std::uint8_t>(DType::boolean)) return bad("tensor '" + t.name + "' has unknown dtype " + std::to_string(dt));
        t.dtype = static_cast<DType>(dt);
        if (rank > kMaxRank) return bad("tensor '" + t.name + "' has rank " + std::to_string(rank) + " (at most 8)");
        if (bits != 0 && bits != 8 && bits != 16 && bits != 32) return bad("tensor '" + t.name + "' has quantization bits " + std::to_string(bits));
        if (is_const > 1) return bad("tensor '" + t.name + "' has a bad constant flag");
        t.quant.bits = bits;
        t.is_constant = is_const == 1;
        std::int64_t numel = 1;
        for (std::uint8_t d = 0; d < rank; ++d) {
            const std::int64_t v = r.i64();
            if (v < 0 || v > (std::int64_t(1) << 40) || (v && numel > (std::int64_t(1) << 40) / v))
                return bad("tensor '" + t.name + "' has an invalid or too large dimension");
            numel *= v;
            t.shape.push_back(v);
        }
        const std::uint32_t n_scales = count(8);
        if (!r.ok()) return bad("tensor '" + t.name + "': bad scale count");
        if (t.quant.axis < -1 || (t.quant.axis >= 0 && static_cast<std::size_t>(t.quant.axis) >= t.shape.size()))
            return bad("tensor '" + t.name + "' has quantization axis " + std::to_string(t.quant.axis) + " outside its rank");
        const std::uint64_t expect_scales = t.quant.bits == 0 ? 0 : t.quant.axis < 0 ? 1 : static_cast<std::uint64_t>(t.shape[static_cast<std::size_t>(t.quant.axis)]);
        if (n_scales != expect_scales)
            return bad("tensor '" + t.name + "' has " + std::to_string(n_scales) + " scales, expected " + std::to_string(expect_scales));
        t.quant.scales.resize(n_scales);
        t.quant.zero_points.resize(n_scales);
        for (auto& s : t.quant.scales) {
            s = r.f32();
            if (!(s > 0.0f) || !std::isfinite(s)) return bad("tensor '" + t.name + "' has a non-positive or non-finite scale");
        }
        for (auto& z : t.quant.zero_points) z = r.i32();
        if (t.is_constant) {
            const std::uint64_t nbytes = r.u64();
            r.align8();
            if (!r.ok()) return bad("truncated tensor '" + t.name + "'");
            if (nbytes != static_cast<std::uint64_t>(numel) * dtype_size(t.dtype))
                return bad("constant '" + t.name + "' holds " + std::to_string(nbytes) + " bytes, its shape and dtype need " +
                           std::to_string(static_cast<std::uint64_t>(numel) * dtype_size(t.dtype)));
            if (!r.raw(t.data, static_cast<std::size_t>(nbytes))) return bad("truncated data of constant '" + t.name + "'");
        }
        if (!r.ok()) return bad("truncated tensor '" + t.name + "'");
    }
    auto read_ids = [&](std::vector<std::int32_t>& ids, bool allow_missing) -> bool {
        const std::uint32_t n = count(4);
        if (!r.ok()) return false;
        ids.resize(n);
        for (auto& id : ids) {
            id = r.i32();
            if (!r.ok() || id < (allow_missing ? -1 : 0) || id >= static_cast<std::int32_t>(n_tensors)) return false;
        }
        return true;
    };
    if (!read_ids(p.inputs, false)) return bad("bad program input list");
    if (!read_ids(p.outputs, false)) return bad("bad program output list");
    const std::uint32_t n_nodes = count(16);
    if (!r.ok()) return bad("bad node count");
    p.nodes.resize(n_nodes);
    // dataflow validation: a tensor is available once it is an input, a constant or produced
    std::vector<std::uint8_t> available(n_tensors, 0);
    for (auto id : p.inputs) available[static_cast<std::size_t>(id)] = 1;
    for (std::uint32_t i = 0; i < n_tensors; ++i)
        if (p.tensors[i].is_constant) available[i] = 1;
    for (std::uint32_t i = 0; i < n_nodes; ++i) {
        ProgramNode& n = p.nodes[i];
        r.str(n.name);
        r.str(n.op);
        if (!r.ok()) return bad("truncated node " + std::to_string(i));
        if (!read_ids(n.inputs, true) || !read_ids(n.outputs, false)) return bad("node '" + n.name + "' has a bad tensor index");
        for (auto id : n.inputs)
            if (id >= 0 && !available[static_cast<std::size_t>(id)])
                return bad("node '" + n.name + "' reads tensor '" + p.tensors[static_cast<std::size_t>(id)].name +
                           "' before anything produces it");
        for (auto id : n.outputs) {
            if (available[static_cast<std::size_t>(id)])
                return bad("node '" + n.name + "' writes tensor '" + p.tensors[static_cast<std::size_t>(id)].name +
                           "' which already has a value");
            available[static_cast<std::size_t>(id)] = 1;
        }
        const std::uint32_t n_attrs = count(5);
        for (std::uint32_t a = 0; a < n_attrs && r.ok(); ++a) {
            std::string key;
            r.str(key);
            AttrValue v;
            const std::uint8_t kind = r.u8();
            if (kind > 2) return bad("node '" + n.name + "' attribute '" + key + "' has unknown kind " + std::to_string(kind));
            v.kind = static_cast<AttrValue::Kind>(kind);
            if (v.kind == AttrValue::Kind::ints) {
                v.ints.resize(count(8));
                for (auto& x : v.ints) x = r.i64();
            } else if (v.kind == AttrValue::Kind::floats) {
                v.floats.resize(count(4));
                for (auto& x : v.floats) x = r.f32();
            } else {
                r.str(v.str);
            }
            n.attrs[key] = std::move(v);
        }
        if (!r.ok()) return bad("truncated attributes of node '" + n.name + "'");
    }
    for (auto id : p.outputs)
        if (!available[static_cast<std::size_t>(id)])
            return bad("program output '" + p.tensors[static_cast<std::size_t>(id)].name + "' is never produced");
    if (r.remaining() != 0) return bad(std::to_string(r.remaining()) + " unexpected bytes after the last node");
    out = std::move(p);
    return Status::ok;
}

/// Reads and validates a .bpuq file; an unreadable or invalid file is a bpuq::Error naming it.
inline Program load_program_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    BPUQ_CHECK(f.good(), "program.open", "cannot open integer program '" + path + "'");
    const std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    Program p;
    std::string err;
    const Status st = deserialize_program(bytes.data(), bytes.size(), p, &err);
    BPUQ_CHECK(st == Status::ok, "program.invalid", "'" + path + "' is not a valid bpuq program: " + err);
    return p;
}

}  // namespace emul
BPUQ_NAMESPACE_END
