// The integer program: tensors (with quantization and constant data) and nodes with attributes.
//
// This is what bpuq_convert lowers a calibrated graph to and what the emulator and firmware
// runtime execute. It is deliberately generic — an op name plus named integer/float/string
// attributes — so that the container format never changes when an op is added; the meaning of
// each op's attributes is documented in docs/PROGRAM.md. Std only (part of the firmware header).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "../core/config.hpp"
#include "../core/dtype.hpp"
#include "../core/qparams.hpp"
#include "../core/tensor.hpp"

BPUQ_NAMESPACE_BEGIN
namespace emul {

/// How a program tensor's integers relate to reals: x = scale[c] * (q - zero_point[c]).
/// bits == 0 marks a float tensor (CPU nodes, float model outputs).
struct QuantInfo {
    int bits = 0;
    int axis = -1;  ///< per-channel axis, -1 = per-tensor
    std::vector<float> scales;
    std::vector<std::int32_t> zero_points;
};

struct ProgramTensor {
    std::string name;
    DType dtype = DType::int8;
    Shape shape;
    QuantInfo quant;
    bool is_constant = false;
    std::vector<std::uint8_t> data;  ///< constant payload, numel * dtype_size bytes, little endian

    std::int64_t numel() const {
        std::int64_t n = 1;
        for (auto d : shape) n *= d;
        return n;
    }
};

/// The quantization parameters of a program tensor as QParams (bits 0 = float tensor).
inline QParams qparams_of(const ProgramTensor& t) {
    QParams q;
    q.bits = t.quant.bits;
    q.axis = t.quant.axis;
    q.scale = t.quant.scales;
    q.zero_point = t.quant.zero_points;
    return q;
}

/// A named attribute: a list of int64, a list of float, or a string.
struct AttrValue {
    enum class Kind : std::uint8_t { ints = 0, floats = 1, string = 2 };
    Kind kind = Kind::ints;
    std::vector<std::int64_t> ints;
    std::vector<float> floats;
    std::string str;

    static AttrValue of_ints(std::vector<std::int64_t> v) {
        AttrValue a;
        a.kind = Kind::ints;
        a.ints = std::move(v);
        return a;
    }
    static AttrValue of_floats(std::vector<float> v) {
        AttrValue a;
        a.kind = Kind::floats;
        a.floats = std::move(v);
        return a;
    }
    static AttrValue of_string(std::string v) {
        AttrValue a;
        a.kind = Kind::string;
        a.str = std::move(v);
        return a;
    }
    bool operator==(const AttrValue& o) const {
        return kind == o.kind && ints == o.ints && floats == o.floats && str == o.str;
    }
};

struct ProgramNode {
    std::string name;
    std::string op;
    std::vector<std::int32_t> inputs;   ///< tensor indices; -1 = omitted optional input
    std::vector<std::int32_t> outputs;  ///< tensor indices
    std::map<std::string, AttrValue> attrs;

    const AttrValue* attr(const std::string& key) const {
        auto it = attrs.find(key);
        return it == attrs.end() ? nullptr : &it->second;
    }
};

/// A whole integer program. Nodes are in execution (topological) order.
struct Program {
    std::vector<ProgramTensor> tensors;
    std::vector<std::int32_t> inputs;
    std::vector<std::int32_t> outputs;
    std::vector<ProgramNode> nodes;
    std::map<std::string, std::string> metadata;  ///< producer, source model, config summary, ...

    std::int32_t find_tensor(const std::string& name) const {
        for (std::size_t i = 0; i < tensors.size(); ++i)
            if (tensors[i].name == name) return static_cast<std::int32_t>(i);
        return -1;
    }
};

}  // namespace emul
BPUQ_NAMESPACE_END
