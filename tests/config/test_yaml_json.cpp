// The drivers' YAML reader: core-schema scalar typing, files, and errors naming file and line.
#include <doctest/doctest.h>

#include <bpuq/config.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "yaml_json.hpp"

using bpuq_driver::read_config_file;

namespace {
std::string write_temp(const std::string& name, const std::string& text) {
    const std::string tmpdir = "/tmp/bpuq_test_" + name;
    std::ofstream(tmpdir) << text;
    return tmpdir;
}
}  // namespace

TEST_CASE("a Horizon yaml reads into the same config as its JSON") {
    const std::string yaml = R"(# a typical hb_mapper config
model_parameters:
  onnx_model: 'resnet8.onnx'
  march: "bayes-e"
  output_model_file_prefix: resnet8
  node_info: {conv_1: {ON: CPU}}
input_parameters:
  input_name: input_1
  input_type_train: rgb
  input_type_rt: rgb
  input_layout_train: NCHW
  input_shape: 1x3x32x32
  norm_type: data_scale
  scale_value: 0.00392156862745098
calibration_parameters:
  cal_data_dir: ./cal
  calibration_type: default
  per_channel: False
  max_percentile: 0.99995
  optimization: set_Softmax_output_int8
compiler_parameters:
  compile_mode: latency
  optimize_level: O3
  core_num: 1
)";
    const auto j = read_config_file(write_temp("ok.yaml", yaml));
    CHECK(j["calibration_parameters"]["per_channel"].is_boolean());
    CHECK(j["input_parameters"]["scale_value"].is_number_float());
    CHECK(j["compiler_parameters"]["core_num"] == 1);
    const auto c = bpuq::config::parse_convert_config(j, "ok.yaml", "/d");
    CHECK(c.onnx_model == "/d/resnet8.onnx");
    CHECK(c.inputs[0].scale[0] == doctest::Approx(1.0f / 255.0f));
    CHECK(c.optimization.softmax_output_int8);
    CHECK(c.node_info.at("conv_1").on == "CPU");
}

TEST_CASE("quoted scalars stay strings; plain ones are typed") {
    const auto j = read_config_file(write_temp("types.yaml", "a: '1'\nb: 1\nc: 1.5e3\nd: true\ne: ~\nf: 1x3\ng: \"no\"\n"));
    CHECK(j["a"].is_string());
    CHECK(j["b"].is_number_integer());
    CHECK(j["c"] == 1500.0);
    CHECK(j["d"] == true);
    CHECK(j["e"].is_null());
    CHECK(j["f"] == "1x3");
    CHECK(j["g"] == "no");
}

TEST_CASE("errors name the file and the line") {
    CHECK_THROWS_WITH_AS(read_config_file("/nonexistent/x.yaml"), doctest::Contains("cannot open config file '/nonexistent/x.yaml'"),
                         bpuq::Error);
    const std::string bad = write_temp("bad.yaml", "model_parameters:\n  onnx_model: [unclosed\n");
    CHECK_THROWS_WITH_AS(read_config_file(bad), doctest::Contains("bad.yaml: line"), bpuq::Error);
    const std::string dup = write_temp("dup.yaml", "a: 1\na: 2\n");
    CHECK_THROWS_WITH_AS(read_config_file(dup), doctest::Contains("key 'a' appears twice"), bpuq::Error);
    const std::string list = write_temp("list.yaml", "- 1\n- 2\n");
    CHECK_THROWS_WITH_AS(read_config_file(list), doctest::Contains("top level must be a mapping"), bpuq::Error);
    const std::string badjson = write_temp("bad.json", "{\"a\": }");
    CHECK_THROWS_WITH_AS(read_config_file(badjson), doctest::Contains("not valid JSON"), bpuq::Error);
}

TEST_CASE("every shipped example config parses") {
    namespace fs = std::filesystem;
    int n = 0;
    for (const auto& e : fs::directory_iterator(std::string(BPUQ_SOURCE_DIR) + "/examples/configs")) {
        if (e.path().extension() != ".yaml") continue;
        const auto j = read_config_file(e.path().string());
        const auto c = bpuq::config::parse_convert_config(j, e.path().filename().string(), e.path().parent_path().string());
        CHECK(c.calibration_type == "default");
        CHECK(c.onnx_model.find("shared/data") != std::string::npos);
        ++n;
    }
    CHECK(n == 5);
}
