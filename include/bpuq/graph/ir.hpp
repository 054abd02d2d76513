// The graph IR: Graph, Node, Value, Attribute, initializers, topological order and lookups.
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <queue>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "../core/config.hpp"
#include "../core/dtype.hpp"
#include "../core/error.hpp"
#include "../core/tensor.hpp"

BPUQ_NAMESPACE_BEGIN

namespace graph {

/// A node attribute (the ONNX kinds a CNN needs; subgraphs are not supported).
struct Attribute {
    enum class Kind { float_, int_, string_, tensor, floats, ints, strings };
    Kind kind = Kind::int_;
    float f = 0.f;
    std::int64_t i = 0;
    std::string s;
    Tensor t;
    std::vector<float> floats;
    std::vector<std::int64_t> ints;
    std::vector<std::string> strings;

    static Attribute make_float(float v) { Attribute a; a.kind = Kind::float_; a.f = v; return a; }
    static Attribute make_int(std::int64_t v) { Attribute a; a.kind = Kind::int_; a.i = v; return a; }
    static Attribute make_string(std::string v) { Attribute a; a.kind = Kind::string_; a.s = std::move(v); return a; }
    static Attribute make_tensor(Tensor v) { Attribute a; a.kind = Kind::tensor; a.t = std::move(v); return a; }
    static Attribute make_floats(std::vector<float> v) { Attribute a; a.kind = Kind::floats; a.floats = std::move(v); return a; }
    static Attribute make_ints(std::vector<std::int64_t> v) { Attribute a; a.kind = Kind::ints; a.ints = std::move(v); return a; }
    static Attribute make_strings(std::vector<std::string> v) { Attribute a; a.kind = Kind::strings; a.strings = std::move(v); return a; }
};

inline const char* attribute_kind_name(Attribute::Kind k) {
    switch (k) {
        case Attribute::Kind::float_: return "float";
        case Attribute::Kind::int_: return "int";
        case Attribute::Kind::string_: return "string";
        case Attribute::Kind::tensor: return "tensor";
        case Attribute::Kind::floats: return "floats";
        case Attribute::Kind::ints: return "ints";
        case Attribute::Kind::strings: return "strings";
    }
    return "?";
}

/// A named tensor flowing along an edge. Unknown dims are -1; `has_shape` false = rank unknown.
struct Value {
    std::string name;
    DType dtype = DType::float32;
    bool has_dtype = false;
    Shape shape;
    bool has_shape = false;
    /// Symbolic dim names from the model ("N", "batch") kept for export; empty when numeric.
    std::vector<std::string> dim_params;
};

/// One operator application. Empty input names are omitted optional inputs (ONNX convention).
struct Node {
    std::string name;
    std::string op_type;
    std::string domain;  ///< "" = ai.onnx
    std::vector<std::string> inputs;
    std::vector<std::string> outputs;
    std::map<std::string, Attribute> attributes;

    bool has_attr(const std::string& key) const { return attributes.count(key) != 0; }
    std::string describe() const { return "node '" + name + "' (" + op_type + ")"; }

    const Attribute& attr(const std::string& key, Attribute::Kind kind) const {
        auto it = attributes.find(key);
        BPUQ_CHECK(it != attributes.end(), "graph.attribute", describe() + " has no attribute '" + key + "'");
        BPUQ_CHECK(it->second.kind == kind, "graph.attribute",
                   describe() + " attribute '" + key + "' is " + attribute_kind_name(it->second.kind) + ", expected " +
                       attribute_kind_name(kind));
        return it->second;
    }
    std::int64_t attr_int(const std::string& key, std::int64_t dflt) const {
        return has_attr(key) ? attr(key, Attribute::Kind::int_).i : dflt;
    }
    float attr_float(const std::string& key, float dflt) const {
        return has_attr(key) ? attr(key, Attribute::Kind::float_).f : dflt;
    }
    std::string attr_string(const std::string& key, const std::string& dflt) const {
        return has_attr(key) ? attr(key, Attribute::Kind::string_).s : dflt;
    }
    std::vector<std::int64_t> attr_ints(const std::string& key, std::vector<std::int64_t> dflt = {}) const {
        return has_attr(key) ? attr(key, Attribute::Kind::ints).ints : dflt;
    }
    std::vector<float> attr_floats(const std::string& key, std::vector<float> dflt = {}) const {
        return has_attr(key) ? attr(key, Attribute::Kind::floats).floats : dflt;
    }
    /// Number of inputs actually given (trailing empty names do not count).
    std::size_t num_inputs() const {
        std::size_t n = inputs.size();
        while (n > 0 && inputs[n - 1].empty()) --n;
        return n;
    }
    bool has_input(std::size_t i) const { return i < inputs.size() && !inputs[i].empty(); }
};

/// A dataflow graph: nodes in topological order after sort(), values by name, constant
/// initializers, declared inputs and outputs, and the ai.onnx opset it was written for.
class Graph {
public:
    std::string name;
    std::int64_t opset = 13;      ///< ai.onnx opset version
    std::int64_t ir_version = 8;
    std::string producer;
    std::vector<Node> nodes;
    std::vector<std::string> inputs;   ///< graph inputs that are not initializers
    std::vector<std::string> outputs;
    std::map<std::string, Tensor> initializers;
    std::map<std::string, Value> values;

    // ---- lookups ----
    bool is_initializer(const std::string& tensor) const { return initializers.count(tensor) != 0; }
    const Tensor* initializer(const std::string& tensor) const {
        auto it = initializers.find(tensor);
        return it == initializers.end() ? nullptr : &it->second;
    }
    Value& value(const std::string& tensor) {
        Value& v = values[tensor];
        v.name = tensor;
        return v;
    }
    const Value* find_value(const std::string& tensor) const {
        auto it = values.find(tensor);
        return it == values.end() ? nullptr : &it->second;
    }
    /// Index of the node named `node_name`, or -1.
    std::int64_t find_node(const std::string& node_name) const {
        for (std::size_t i = 0; i < nodes.size(); ++i)
            if (nodes[i].name == node_name) return static_cast<std::int64_t>(i);
        return -1;
    }
    /// Index of the node producing `tensor`, or -1 (graph input, initializer or unknown).
    std::int64_t producer_of(const std::string& tensor) const {
        for (std::size_t i = 0; i < nodes.size(); ++i)
            for (const auto& o : nodes[i].outputs)
                if (o == tensor) return static_cast<std::int64_t>(i);
        return -1;
    }
    /// Indices of the nodes reading `tensor`.
    std::vector<std::size_t> consumers_of(const std::string& tensor) const {
        std::vector<std::size_t> r;
        for (std::size_t i = 0; i < nodes.size(); ++i)
            if (std::find(nodes[i].inputs.begin(), nodes[i].inputs.end(), tensor) != nodes[i].inputs.end()) r.push_back(i);
        return r;
    }
    bool is_graph_output(const std::string& tensor) const {
        return std::find(outputs.begin(), outputs.end(), tensor) != outputs.end();
    }

    /// Gives every unnamed node a unique name ("<op>_<index>") so messages can name it.
    void name_nodes() {
        std::unordered_set<std::string> used;
        for (auto& n : nodes)
            if (!n.name.empty()) used.insert(n.name);
        for (std::size_t i = 0; i < nodes.size(); ++i) {
            if (!nodes[i].name.empty()) continue;
            std::string base = nodes[i].op_type + "_" + std::to_string(i), cand = base;
            for (int k = 1; used.count(cand); ++k) cand = base + "_" + std::to_string(k);
            nodes[i].name = cand;
            used.insert(cand);
        }
    }

    /// Checks that every edge has exactly one source (input, initializer or one node) and
    /// orders the nodes topologically (stable: the original order where it is valid).
    /// Errors: graph.dangling (an input nobody produces), graph.duplicate (two producers),
    /// graph.cycle (names the nodes on the cycle), graph.output (an output nobody produces).
    void sort() {
        std::unordered_map<std::string, std::int64_t> producer;  // -1 = graph input / initializer
        for (const auto& in : inputs) producer[in] = -1;
        for (const auto& kv : initializers) producer[kv.first] = -1;
        for (std::size_t i = 0; i < nodes.size(); ++i)
            for (const auto& o : nodes[i].outputs) {
                if (o.empty()) continue;
                auto it = producer.find(o);
                BPUQ_CHECK(it == producer.end(), "graph.duplicate",
                           "tensor '" + o + "' is produced by " + nodes[i].describe() + " and also by " +
                               (it != producer.end() && it->second >= 0 ? nodes[it->second].describe()
                                                                         : std::string("a graph input or initializer")));
                producer[o] = static_cast<std::int64_t>(i);
            }
        std::vector<std::vector<std::size_t>> users(nodes.size());
        std::vector<std::size_t> pending(nodes.size(), 0);
        for (std::size_t i = 0; i < nodes.size(); ++i)
            for (const auto& in : nodes[i].inputs) {
                if (in.empty()) continue;
                auto it = producer.find(in);
                BPUQ_CHECK(it != producer.end(), "graph.dangling",
                           nodes[i].describe() + " reads tensor '" + in +
                               "' which is neither a graph input, an initializer nor any node's output");
                if (it->second >= 0) {
                    users[static_cast<std::size_t>(it->second)].push_back(i);
                    ++pending[i];
                }
            }
        for (const auto& o : outputs)
            BPUQ_CHECK(producer.count(o), "graph.output", "graph output '" + o + "' is not produced by any node");
        // Kahn's algorithm; the min-heap keeps the original order where dependencies allow.
        std::priority_queue<std::size_t, std::vector<std::size_t>, std::greater<std::size_t>> ready;
        for (std::size_t i = 0; i < nodes.size(); ++i)
            if (pending[i] == 0) ready.push(i);
        std::vector<std::size_t> order;
        while (!ready.empty()) {
            std::size_t i = ready.top();
            ready.pop();
            order.push_back(i);
            for (std::size_t u : users[i])
                if (--pending[u] == 0) ready.push(u);
        }
        if (order.size() != nodes.size()) {
            std::string stuck;
            for (std::size_t i = 0; i < nodes.size() && stuck.size() < 400; ++i)
                if (pending[i]) stuck += (stuck.empty() ? "" : ", ") + nodes[i].describe();
            BPUQ_THROW("graph.cycle", "graph '" + name + "' has a cycle; nodes on or after it: " + stuck);
        }
        std::vector<Node> sorted;
        sorted.reserve(nodes.size());
        for (std::size_t i : order) sorted.push_back(std::move(nodes[i]));
        nodes = std::move(sorted);
    }

    /// Drops initializers nobody reads and values no node, input or output mentions.
    void remove_unused() {
        std::unordered_set<std::string> used(outputs.begin(), outputs.end());
        for (const auto& n : nodes) used.insert(n.inputs.begin(), n.inputs.end());
        for (auto it = initializers.begin(); it != initializers.end();)
            it = used.count(it->first) ? std::next(it) : initializers.erase(it);
        for (const auto& n : nodes) used.insert(n.outputs.begin(), n.outputs.end());
        used.insert(inputs.begin(), inputs.end());
        for (auto it = values.begin(); it != values.end();)
            it = used.count(it->first) || initializers.count(it->first) ? std::next(it) : values.erase(it);
    }

    /// A tensor name not used yet, starting from `base`.
    std::string unique_name(const std::string& base) const {
        std::unordered_set<std::string> used(inputs.begin(), inputs.end());
        for (const auto& n : nodes) {
            used.insert(n.outputs.begin(), n.outputs.end());
            used.insert(n.name);
        }
        for (const auto& kv : initializers) used.insert(kv.first);
        std::string cand = base;
        for (int k = 1; used.count(cand) || values.count(cand); ++k) cand = base + "_" + std::to_string(k);
        return cand;
    }
};

}  // namespace graph

BPUQ_NAMESPACE_END
