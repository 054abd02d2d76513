// Statistics collection on ResNet-8: thresholds equal the activations' true extrema, results do
// not depend on the thread count, and every calibration choice gives valid parameters.
#include <doctest/doctest.h>

#include <bpuq/calib/collect.hpp>
#include <bpuq/io/npy.hpp>
#include <bpuq/onnx/import.hpp>

#include <cmath>
#include <filesystem>

#include "reference_samples.hpp"

using namespace bpuq;
namespace fs = std::filesystem;


TEST_CASE("ResNet-8 statistics: exact extrema, thread-independent, every choice valid") {
    if (!bpuq_test::path_exists(bpuq_test::data_dir() + "/cifar10/models/resnet8_fp32.onnx")) {
        MESSAGE("skipped: no ResNet-8 under " << bpuq_test::data_dir());
        return;
    }
    graph::Executor exec(onnx_io::load_model(bpuq_test::data_dir() + "/cifar10/models/resnet8_fp32.onnx"));
    config::ConvertConfig cfg;
    const calib::QuantPlan plan = calib::make_quant_plan(exec.graph(), cfg);
    const std::string dir = bpuq_test::write_reference_samples("resnet8_fp32", fs::temp_directory_path() / "bpuq_collect_r8");
    const Shape in_shape{1, 3, 32, 32};
    io::CalibrationSet data({{exec.graph().inputs[0], dir, "float32", in_shape}});

    calib::CollectOptions opt;
    opt.stats.per_channel = true;
    std::size_t progress_calls = 0;
    opt.progress = [&](std::size_t, std::size_t) { ++progress_calls; };
    const calib::CalibrationStats one = calib::collect_statistics(exec, data, plan, opt);
    CHECK(one.samples == 8);
    CHECK(progress_calls == 8);
    opt.threads = 2;
    opt.progress = nullptr;
    const calib::CalibrationStats two = calib::collect_statistics(exec, data, plan, opt);

    // independent check of the extrema: run every sample and track min/max of each tensor
    std::map<std::string, std::pair<float, float>> ext;
    graph::ExecContext ctx(1);
    for (std::size_t s = 0; s < data.size(); ++s)
        exec.run(data.load_sample(s), ctx, [&](const graph::Node& n, const std::vector<Tensor>& outs) {
            for (std::size_t k = 0; k < outs.size(); ++k) {
                if (outs[k].dtype() != DType::float32) continue;
                auto& e = ext.emplace(n.outputs[k], std::make_pair(INFINITY, -INFINITY)).first->second;
                for (std::int64_t i = 0; i < outs[k].numel(); ++i) {
                    e.first = std::min(e.first, outs[k].data<float>()[i]);
                    e.second = std::max(e.second, outs[k].data<float>()[i]);
                }
            }
        });
    int checked = 0;
    for (const auto& t : plan.calibrated) {
        const auto& a = one.tensors.at(t);
        const auto& b = two.tensors.at(t);
        CHECK(a.min() == b.min());
        CHECK(a.max() == b.max());
        CHECK(a.histogram() == b.histogram());
        if (ext.count(t)) {
            CHECK(a.min() == ext[t].first);
            CHECK(a.max() == ext[t].second);
            ++checked;
        }
    }
    CHECK(checked >= 5);

    // every point of the default search space yields finite, positive scales, identical across threads
    for (CalibMethod m : {CalibMethod::max, CalibMethod::kl, CalibMethod::mse, CalibMethod::percentile})
        for (double p : {1.0, 0.99995})
            for (bool pc : {false, true})
                for (bool asym : {false, true}) {
                    calib::CalibChoice c{m, m == CalibMethod::percentile ? 0.9999 : p, pc, asym};
                    const auto qa = calib::choose_qparams(one, plan, c);
                    const auto qb = calib::choose_qparams(two, plan, c);
                    for (const auto& kv : qa) {
                        for (float s : kv.second.scale) REQUIRE((std::isfinite(s) && s > 0.0f));
                        REQUIRE(kv.second.scale == qb.at(kv.first).scale);
                        REQUIRE(kv.second.zero_point == qb.at(kv.first).zero_point);
                    }
                }
    // clipping methods never exceed max, and KL clips the widest activations
    const calib::CalibChoice mx{CalibMethod::max, 1.0, false, false}, kl{CalibMethod::kl, 1.0, false, false};
    int clipped = 0;
    for (const auto& t : plan.calibrated) {
        const float tmax = one.tensors.at(t).threshold(mx, 8), tkl = one.tensors.at(t).threshold(kl, 8);
        CHECK(tkl <= tmax * 1.0001f);
        clipped += tkl < tmax * 0.99f;
    }
    CHECK(clipped > 0);
    fs::remove_all(dir);
}
