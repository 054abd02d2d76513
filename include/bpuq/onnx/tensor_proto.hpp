// onnx::TensorProto <-> bpuq::Tensor: every storage form (raw_data, typed fields, external
// data confined to the model's folder), float16/bfloat16 upcast to float32.
#pragma once

#include <onnx/onnx_pb.h>

#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <string>

#include "../core/config.hpp"
#include "../core/error.hpp"
#include "../core/tensor.hpp"

BPUQ_NAMESPACE_BEGIN

namespace onnx_io {

/// ONNX element type -> bpuq DType (float16/bfloat16 map to float32: they are upcast on load).
inline bool dtype_from_onnx(int elem_type, DType& out) {
    using TP = ::onnx::TensorProto;
    switch (elem_type) {
        case TP::FLOAT: out = DType::float32; return true;
        case TP::FLOAT16: out = DType::float32; return true;
        case TP::BFLOAT16: out = DType::float32; return true;
        case TP::DOUBLE: out = DType::float64; return true;
        case TP::INT8: out = DType::int8; return true;
        case TP::UINT8: out = DType::uint8; return true;
        case TP::INT16: out = DType::int16; return true;
        case TP::UINT16: out = DType::uint16; return true;
        case TP::INT32: out = DType::int32; return true;
        case TP::UINT32: out = DType::uint32; return true;
        case TP::INT64: out = DType::int64; return true;
        case TP::UINT64: out = DType::uint64; return true;
        case TP::BOOL: out = DType::boolean; return true;
        default: return false;
    }
}
inline int dtype_to_onnx(DType t) {
    using TP = ::onnx::TensorProto;
    switch (t) {
        case DType::float32: return TP::FLOAT;
        case DType::float64: return TP::DOUBLE;
        case DType::float16: return TP::FLOAT16;
        case DType::bfloat16: return TP::BFLOAT16;
        case DType::int8: return TP::INT8;
        case DType::uint8: return TP::UINT8;
        case DType::int16: return TP::INT16;
        case DType::uint16: return TP::UINT16;
        case DType::int32: return TP::INT32;
        case DType::uint32: return TP::UINT32;
        case DType::int64: return TP::INT64;
        case DType::uint64: return TP::UINT64;
        case DType::boolean: return TP::BOOL;
    }
    return TP::UNDEFINED;
}
inline std::string onnx_type_name(int elem_type) {
    const auto* d = ::onnx::TensorProto_DataType_descriptor();
    const auto* v = d->FindValueByNumber(elem_type);
    return v ? v->name() : "type#" + std::to_string(elem_type);
}

/// IEEE half -> float (exact; subnormals, inf and NaN included).
inline float half_to_float(std::uint16_t h) {
    const std::uint32_t sign = std::uint32_t(h & 0x8000u) << 16;
    std::uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu, bits;
    if (exp == 0) {
        if (mant == 0) bits = sign;
        else {  // subnormal: normalize
            exp = 127 - 15 + 1;
            while ((mant & 0x400u) == 0) {
                mant <<= 1;
                --exp;
            }
            bits = sign | (exp << 23) | ((mant & 0x3ffu) << 13);
        }
    } else if (exp == 31) bits = sign | 0x7f800000u | (mant << 13);
    else bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}
inline float bfloat16_to_float(std::uint16_t h) {
    const std::uint32_t bits = std::uint32_t(h) << 16;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

/// Path of an external-data file, confined to the model's folder: absolute paths and any
/// ".." component are rejected.
inline std::string external_data_path(const std::string& model_dir, const std::string& location,
                                      const std::string& tensor) {
    BPUQ_CHECK(!location.empty(), "onnx.external_data", "tensor '" + tensor + "' has external data without a location");
    BPUQ_CHECK(location[0] != '/' && location.find('\\') == std::string::npos && location.find(':') == std::string::npos,
               "onnx.external_data",
               "tensor '" + tensor + "' external data location '" + location +
                   "' is absolute; it must be a relative path inside the model's folder");
    std::size_t b = 0;
    while (b <= location.size()) {
        std::size_t e = location.find('/', b);
        if (e == std::string::npos) e = location.size();
        BPUQ_CHECK(location.substr(b, e - b) != "..", "onnx.external_data",
                   "tensor '" + tensor + "' external data location '" + location + "' escapes the model's folder");
        b = e + 1;
    }
    const std::string dir = model_dir.empty() ? std::string(".") : model_dir;
    const std::string path = dir + "/" + location;
    // symbolic links may still point elsewhere: compare canonical paths when the file exists
    char real_dir[PATH_MAX], real_file[PATH_MAX];
    if (::realpath(dir.c_str(), real_dir) && ::realpath(path.c_str(), real_file)) {
        const std::string d = std::string(real_dir) + "/", f = real_file;
        BPUQ_CHECK(f.compare(0, d.size(), d) == 0, "onnx.external_data",
                   "tensor '" + tensor + "' external data location '" + location + "' resolves to '" + f +
                       "' outside the model's folder '" + real_dir + "'");
    }
    return path;
}

/// Converts a TensorProto; `model_dir` resolves external data ("" = external data is an error).
inline Tensor tensor_from_proto(const ::onnx::TensorProto& p, const std::string& model_dir, const std::string& where) {
    const std::string name = p.name().empty() ? where : "'" + p.name() + "' (" + where + ")";
    DType dtype{};
    BPUQ_CHECK(dtype_from_onnx(p.data_type(), dtype), "onnx.dtype",
               "tensor " + name + " has element type " + onnx_type_name(p.data_type()) +
                   "; supported: FLOAT, FLOAT16, BFLOAT16, DOUBLE, (U)INT8/16/32/64, BOOL");
    Shape shape;
    std::int64_t n = 1;
    for (auto d : p.dims()) {
        BPUQ_CHECK(d >= 0, "onnx.shape", "tensor " + name + " has a negative dimension " + std::to_string(d));
        BPUQ_CHECK(d == 0 || n <= (std::int64_t(1) << 40) / d, "onnx.shape",
                   "tensor " + name + " dims would overflow (more than 2^40 elements)");
        n *= d;
        shape.push_back(d);
    }
    const int et = p.data_type();
    const bool half = et == ::onnx::TensorProto::FLOAT16 || et == ::onnx::TensorProto::BFLOAT16;
    const std::size_t src_elem = half ? 2 : dtype_size(dtype);

    // the stored bytes: raw_data, or external file contents
    std::string external;
    const std::string* raw = p.has_raw_data() ? &p.raw_data() : nullptr;
    if (p.data_location() == ::onnx::TensorProto::EXTERNAL) {
        BPUQ_CHECK(!model_dir.empty(), "onnx.external_data",
                   "tensor " + name + " uses external data but the model was not loaded from a file");
        std::string location;
        std::int64_t offset = 0, length = -1;
        for (const auto& kv : p.external_data()) {
            if (kv.key() == "location") location = kv.value();
            else if (kv.key() == "offset") offset = std::stoll(kv.value());
            else if (kv.key() == "length") length = std::stoll(kv.value());
        }
        const std::string path = external_data_path(model_dir, location, name);
        std::ifstream f(path, std::ios::binary);
        BPUQ_CHECK(f.good(), "onnx.external_data", "cannot open external data file '" + path + "' of tensor " + name);
        f.seekg(0, std::ios::end);
        const std::int64_t size = f.tellg();
        const std::int64_t want = length >= 0 ? length : n * std::int64_t(src_elem);
        BPUQ_CHECK(offset >= 0 && want >= 0 && offset <= size && want <= size - offset, "onnx.external_data",
                   "external data file '" + path + "' (" + std::to_string(size) + " bytes) is too small for tensor " + name +
                       " at offset " + std::to_string(offset) + " length " + std::to_string(want));
        external.resize(std::size_t(want));
        f.seekg(offset);
        f.read(&external[0], want);
        raw = &external;
    }

    // sizes are validated against the stored data before allocating, so a corrupt header
    // cannot make us allocate more than the file holds
    if (raw) {
        BPUQ_CHECK(raw->size() == std::size_t(n) * src_elem, "onnx.tensor",
                   "tensor " + name + " of shape " + shape_to_string(shape) + " has " + std::to_string(raw->size()) +
                       " bytes of data, expected " + std::to_string(std::size_t(n) * src_elem));
        Tensor t(dtype, shape);
        if (half) {
            float* d = t.data<float>();
            for (std::int64_t i = 0; i < n; ++i) {
                std::uint16_t h;
                std::memcpy(&h, raw->data() + 2 * i, 2);
                d[i] = et == ::onnx::TensorProto::FLOAT16 ? half_to_float(h) : bfloat16_to_float(h);
            }
        } else if (n) {
            std::memcpy(t.raw(), raw->data(), t.nbytes());
        }
        return t;
    }
    const int et_field = et == ::onnx::TensorProto::FLOAT ? p.float_data_size()
                         : et == ::onnx::TensorProto::DOUBLE ? p.double_data_size()
                         : et == ::onnx::TensorProto::INT64 ? p.int64_data_size()
                         : (et == ::onnx::TensorProto::UINT32 || et == ::onnx::TensorProto::UINT64) ? p.uint64_data_size()
                                                                                                   : p.int32_data_size();
    BPUQ_CHECK(std::int64_t(et_field) == n, "onnx.tensor",
               "tensor " + name + " of shape " + shape_to_string(shape) + " has " + std::to_string(et_field) +
                   " values, expected " + std::to_string(n));
    Tensor t(dtype, shape);
    switch (et) {
        case ::onnx::TensorProto::FLOAT:
            std::copy(p.float_data().begin(), p.float_data().end(), t.data<float>());
            break;
        case ::onnx::TensorProto::DOUBLE:
            std::copy(p.double_data().begin(), p.double_data().end(), t.data<double>());
            break;
        case ::onnx::TensorProto::INT64:
            std::copy(p.int64_data().begin(), p.int64_data().end(), t.data<std::int64_t>());
            break;
        case ::onnx::TensorProto::UINT32:
        case ::onnx::TensorProto::UINT64:
            for (std::int64_t i = 0; i < n; ++i) {
                if (et == ::onnx::TensorProto::UINT32) t.data<std::uint32_t>()[i] = std::uint32_t(p.uint64_data(int(i)));
                else t.data<std::uint64_t>()[i] = p.uint64_data(int(i));
            }
            break;
        default: {  // int32_data holds int32, (u)int8, (u)int16, bool and the 16-bit floats' bits
            for (std::int64_t i = 0; i < n; ++i) {
                const std::int32_t v = p.int32_data(int(i));
                switch (et) {
                    case ::onnx::TensorProto::INT32: t.data<std::int32_t>()[i] = v; break;
                    case ::onnx::TensorProto::INT8: t.data<std::int8_t>()[i] = std::int8_t(v); break;
                    case ::onnx::TensorProto::UINT8: t.data<std::uint8_t>()[i] = std::uint8_t(v); break;
                    case ::onnx::TensorProto::INT16: t.data<std::int16_t>()[i] = std::int16_t(v); break;
                    case ::onnx::TensorProto::UINT16: t.data<std::uint16_t>()[i] = std::uint16_t(v); break;
                    case ::onnx::TensorProto::BOOL: t.data<bool>()[i] = v != 0; break;
                    case ::onnx::TensorProto::FLOAT16: t.data<float>()[i] = half_to_float(std::uint16_t(v)); break;
                    case ::onnx::TensorProto::BFLOAT16: t.data<float>()[i] = bfloat16_to_float(std::uint16_t(v)); break;
                    default: break;
                }
            }
        }
    }
    return t;
}

/// Tensor -> TensorProto (raw_data, little endian).
inline ::onnx::TensorProto tensor_to_proto(const Tensor& t, const std::string& name) {
    ::onnx::TensorProto p;
    p.set_name(name);
    p.set_data_type(dtype_to_onnx(t.dtype()));
    for (auto d : t.shape()) p.add_dims(d);
    p.set_raw_data(std::string(static_cast<const char*>(t.raw()), t.nbytes()));
    return p;
}

/// Reads a serialized TensorProto file (the .pb files of ONNX's backend tests).
inline Tensor read_tensor_proto_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    BPUQ_CHECK(f.good(), "onnx.open", "cannot open tensor file '" + path + "'");
    const std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    ::onnx::TensorProto p;
    BPUQ_CHECK(p.ParseFromString(bytes), "onnx.parse", "tensor file '" + path + "' is not a valid TensorProto");
    const std::size_t slash = path.find_last_of('/');
    return tensor_from_proto(p, slash == std::string::npos ? "." : path.substr(0, slash), path);
}

}  // namespace onnx_io

BPUQ_NAMESPACE_END
