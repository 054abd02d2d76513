// The loader's fuzz target, shared by the libFuzzer harness and the randomized-mutation
// ctest: any byte string must either import (and then build an executor) or throw bpuq::Error.
#pragma once

#include <bpuq/onnx.hpp>

#include <cstddef>
#include <cstdint>

namespace bpuq_test {

/// Returns true when the bytes imported; throws nothing but bpuq::Error. A model that
/// imports is also run once on zeros when its inputs have small static shapes.
inline bool fuzz_import_once(const std::uint8_t* data, std::size_t size) {
    try {
        bpuq::graph::Graph g = bpuq::onnx_io::import_model_bytes(data, size);
        bpuq::graph::Executor ex(std::move(g));
        std::vector<bpuq::Tensor> inputs;
        for (const auto& name : ex.graph().inputs) {
            const bpuq::graph::Value* v = ex.graph().find_value(name);
            if (!v || !v->has_shape || !v->has_dtype) return true;
            for (auto d : v->shape)
                if (d < 0) return true;
            if (bpuq::shape_numel(v->shape) > (1 << 20)) return true;
            inputs.emplace_back(v->dtype, v->shape);
        }
        bpuq::graph::ExecContext ctx(1);
        ex.run(inputs, ctx);
        return true;
    } catch (const bpuq::Error&) {
        return false;
    }
}

}  // namespace bpuq_test
