// bpuq_expose_tensors: makes every quantized tensor a model output, for tensor-by-tensor comparisons
// of ONNX Runtime's execution of a QDQ model with the integer program (tools/ort_tensors.js).
//   bpuq_expose_tensors quantized_model.onnx out.onnx   every QuantizeLinear output (and its float
//                                                       input) becomes a graph output; out.onnx.json
//                                                       maps each to [scale, zero point, float input]
//   bpuq_expose_tensors program.bpuq out.bpuq           every non-constant int8/int16 tensor becomes
//                                                       an output (names cut to their last 200
//                                                       characters, so that bpuq_infer --output-dir
//                                                       can write them)
#include <bpuq/emul/program_format.hpp>
#include <bpuq/io/atomic_file.hpp>
#include <bpuq/onnx/export.hpp>
#include <bpuq/onnx/import.hpp>

#include <algorithm>
#include <fstream>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>

int main(int argc, char** argv) {
    if (argc != 3) {
        std::cerr << "usage: bpuq_expose_tensors quantized_model.onnx|program.bpuq out.onnx|out.bpuq\n";
        return 2;
    }
    const std::string in = argv[1], out = argv[2];
    try {
        if (in.size() > 5 && in.substr(in.size() - 5) == ".bpuq") {
            bpuq::emul::Program p = bpuq::emul::load_program_file(in);
            p.outputs.clear();
            for (std::size_t i = 0; i < p.tensors.size(); ++i) {
                auto& t = p.tensors[i];
                if (t.is_constant || (t.dtype != bpuq::DType::int8 && t.dtype != bpuq::DType::int16)) continue;
                p.outputs.push_back(static_cast<std::int32_t>(i));
            }
            for (auto& t : p.tensors)
                if (t.name.size() > 200) t.name = t.name.substr(t.name.size() - 200);
            const auto s = bpuq::emul::serialize_program(p);
            bpuq::io::write_file_atomic(out, std::string(s.begin(), s.end()));
            std::cout << "bpuq_expose_tensors: " << p.outputs.size() << " outputs\n";
            return 0;
        }
        bpuq::graph::Graph g = bpuq::onnx_io::load_model(in);
        g.outputs.clear();
        nlohmann::ordered_json meta = nlohmann::ordered_json::object();  // graph order
        for (const auto& n : g.nodes) {
            if (n.op_type != "QuantizeLinear") continue;
            g.outputs.push_back(n.outputs[0]);
            const bool graph_input = std::find(g.inputs.begin(), g.inputs.end(), n.inputs[0]) != g.inputs.end();
            if (!graph_input) g.outputs.push_back(n.inputs[0]);
            const bpuq::Tensor* s = g.initializer(n.inputs[1]);
            const bpuq::Tensor* z = n.inputs.size() > 2 ? g.initializer(n.inputs[2]) : nullptr;
            if (!s || s->numel() != 1) continue;
            const int zp = !z ? 0 : z->dtype() == bpuq::DType::int8 ? z->data<std::int8_t>()[0] : int(z->data<std::uint8_t>()[0]);
            meta[n.outputs[0]] = {s->data<float>()[0], zp, graph_input ? "" : n.inputs[0]};
        }
        std::string bytes;
        bpuq::onnx_io::export_model(g).SerializeToString(&bytes);
        bpuq::io::write_file_atomic(out, bytes);
        bpuq::io::write_file_atomic(out + ".json", meta.dump());
        std::cout << "bpuq_expose_tensors: " << g.outputs.size() << " outputs\n";
        return 0;
    } catch (const std::exception& e) {
        std::cerr << "bpuq_expose_tensors: error: " << e.what() << "\n";
        return 1;
    }
}
