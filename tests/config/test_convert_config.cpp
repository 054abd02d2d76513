// The conversion config parser: every key of SPEC §1.1, defaults, and errors that name key, value, allowed.
#include <doctest/doctest.h>

#include <bpuq/config.hpp>

using namespace bpuq;
using namespace bpuq::config;
using nlohmann::json;

namespace {
json minimal() {
    return json::parse(R"({
      "model_parameters": {"onnx_model": "m.onnx", "output_model_file_prefix": "net"},
      "input_parameters": {"input_type_train": "featuremap", "input_type_rt": "featuremap"},
      "calibration_parameters": {"cal_data_dir": "cal"}
    })");
}
std::string error_of(const json& j) {
    try {
        parse_convert_config(j, "t.yaml", "/base");
    } catch (const bpuq::Error& e) {
        return e.what();
    }
    return "";
}
}  // namespace

TEST_CASE("a full Horizon-style config") {
    const json j = json::parse(R"({
      "model_parameters": {
        "onnx_model": "mobilenet.onnx", "march": "bayes", "output_model_file_prefix": "mobilenet_v2",
        "working_dir": "out", "output_nodes": "prob;logits", "layer_out_dump": false,
        "remove_node_type": "Quantize;Dequantize", "debug_mode": "dump_calibration_data",
        "node_info": {"conv1": {"ON": "CPU"}, "conv2": {"InputType": "int16", "OutputType": "int16"},
                      "add_3": {"InputType1": "int16"}}
      },
      "input_parameters": {
        "input_name": "data", "input_shape": "1x3x224x224", "input_type_train": "rgb",
        "input_layout_train": "NCHW", "input_type_rt": "nv12", "input_space_and_range": "bt601_video",
        "norm_type": "data_mean_and_scale", "mean_value": "123.675 116.28 103.53",
        "scale_value": "0.01712 0.01751 0.01743"
      },
      "calibration_parameters": {
        "cal_data_dir": "./calibration_data_rgb_f32", "calibration_type": "max", "max_percentile": 0.99995,
        "per_channel": true, "run_on_cpu": "softmax", "optimization": "set_all_nodes_int16, asymmetric;bias_correction set_Conv_input_int16"
      },
      "compiler_parameters": {"compile_mode": "latency", "optimize_level": "O3", "core_num": 1, "debug": false}
    })");
    const ConvertConfig c = parse_convert_config(j, "mobilenet.yaml", "/cfg");
    CHECK(c.onnx_model == "/cfg/mobilenet.onnx");
    CHECK(c.working_dir == "/cfg/out");
    CHECK(c.march == "bayes");
    CHECK(c.output_nodes == std::vector<std::string>{"prob", "logits"});
    CHECK(c.remove_node_type.size() == 2);
    CHECK(c.dump_calibration_data);
    CHECK(c.node_info.at("conv1").on == "CPU");
    CHECK(c.node_info.at("conv2").input_bits.at(-1) == 16);
    CHECK(c.node_info.at("conv2").output_bits == 16);
    CHECK(c.node_info.at("add_3").input_bits.at(1) == 16);
    REQUIRE(c.inputs.size() == 1);
    const InputSpec& in = c.inputs[0];
    CHECK(in.name == "data");
    CHECK(in.shape == std::vector<std::int64_t>{1, 3, 224, 224});
    CHECK(in.type_rt == "nv12");
    CHECK(in.layout_rt == "NHWC");
    CHECK(in.mean.size() == 3);
    CHECK(in.scale[2] == doctest::Approx(0.01743f));
    CHECK(in.cal_data_dir == "/cfg/./calibration_data_rgb_f32");
    CHECK(in.cal_data_type == "float32");  // the _f32 folder-name rule
    CHECK(c.calibration_type == "max");
    CHECK(c.max_percentile == doctest::Approx(0.99995));
    CHECK(c.per_channel);
    CHECK(c.run_on_cpu == std::vector<std::string>{"softmax"});
    CHECK(c.optimization.set_all_nodes_int16);
    CHECK(c.optimization.asymmetric);
    CHECK(c.optimization.bias_correction);
    CHECK(c.optimization.input_int16_ops.count("Conv") == 1);
    CHECK(c.compiler_parameters.at("optimize_level") == "O3");
    const json back = to_json(c);
    CHECK(back["inputs"][0]["input_type_rt"] == "nv12");
    CHECK(back["model_parameters"]["node_info"]["conv2"]["InputType"] == "int16");
}

TEST_CASE("defaults") {
    const ConvertConfig c = parse_convert_config(minimal(), "t.yaml");
    CHECK(c.march == "bayes-e");
    CHECK(c.working_dir == "model_output");
    CHECK(c.calibration_type == "default");
    CHECK(c.max_percentile == 1.0);
    CHECK_FALSE(c.per_channel);
    CHECK(c.inputs.size() == 1);
    CHECK(c.inputs[0].norm_type == "no_preprocess");
    CHECK(c.inputs[0].cal_data_type == "uint8");
    CHECK(c.inputs[0].layout_rt == "NCHW");
}

TEST_CASE("several inputs separated by ';' in input_name order") {
    json j = minimal();
    j["input_parameters"] = json::parse(R"({
        "input_name": "img; feat", "input_shape": "1x3x8x8;1x16", "input_type_train": "bgr;featuremap",
        "input_type_rt": "yuv444;featuremap", "norm_type": "data_scale;no_preprocess", "scale_value": "0.0078125;"
    })");
    j["calibration_parameters"]["cal_data_dir"] = "a;b_f32";
    j["calibration_parameters"]["cal_data_type"] = "uint8;float32";
    const ConvertConfig c = parse_convert_config(j, "t.yaml");
    REQUIRE(c.inputs.size() == 2);
    CHECK(c.inputs[1].name == "feat");
    CHECK(c.inputs[1].shape == std::vector<std::int64_t>{1, 16});
    CHECK(c.inputs[0].scale == std::vector<float>{0.0078125f});
    CHECK(c.inputs[1].scale.empty());
    CHECK(c.inputs[1].cal_data_type == "float32");
    j["input_parameters"]["input_type_rt"] = "yuv444";
    CHECK(error_of(j).find("has 1 value(s) separated by ';' but there are 2 inputs") != std::string::npos);
}

TEST_CASE("unknown keys suggest the nearest valid key") {
    json j = minimal();
    j["calibration_parameters"]["calibraton_type"] = "kl";
    const std::string e = error_of(j);
    CHECK(e.find("[bpuq.config.unknown_key]") == 0);
    CHECK(e.find("config t.yaml: calibration_parameters.calibraton_type") != std::string::npos);
    CHECK(e.find("did you mean 'calibration_type'") != std::string::npos);
    json k = minimal();
    k["model_parameter"] = json::object();
    CHECK(error_of(k).find("did you mean 'model_parameters'") != std::string::npos);
    json n = minimal();
    n["model_parameters"]["node_info"] = json::parse(R"({"c1": {"InputTyp": "int16"}})");
    CHECK(error_of(n).find("did you mean 'InputType'") != std::string::npos);
}

TEST_CASE("wrong values name the key, the value and what is allowed") {
    json j = minimal();
    j["calibration_parameters"]["calibration_type"] = "kll";
    std::string e = error_of(j);
    CHECK(e.find("calibration_parameters.calibration_type: 'kll' is not allowed (did you mean 'kl'?)") != std::string::npos);
    CHECK(e.find("allowed: default, mix, kl, max, mse, percentile, load, skip") != std::string::npos);

    j = minimal();
    j["calibration_parameters"]["max_percentile"] = 0.3;
    CHECK(error_of(j).find("max_percentile: 0.3 is outside [0.5, 1.0]") != std::string::npos);
    j["calibration_parameters"]["max_percentile"] = "high";
    CHECK(error_of(j).find("expected a number") != std::string::npos);

    j = minimal();
    j["calibration_parameters"]["per_channel"] = "maybe";
    CHECK(error_of(j).find("per_channel: expected true or false") != std::string::npos);

    j = minimal();
    j["input_parameters"]["input_shape"] = "1x3x-2x4";
    CHECK(error_of(j).find("not a shape like 1x3x224x224") != std::string::npos);

    j = minimal();
    j["calibration_parameters"]["optimization"] = "set_all_node_int16";
    CHECK(error_of(j).find("did you mean 'set_all_nodes_int16'") != std::string::npos);

    j = minimal();
    j["model_parameters"].erase("onnx_model");
    CHECK(error_of(j).find("model_parameters.onnx_model: required") != std::string::npos);

    j = minimal();
    j["calibration_parameters"].erase("cal_data_dir");
    CHECK(error_of(j).find("cal_data_dir: required for calibration_type default") != std::string::npos);
    j["calibration_parameters"]["calibration_type"] = "skip";
    CHECK(error_of(j).empty());
}

TEST_CASE("forbidden and contradictory combinations") {
    json j = minimal();
    j["input_parameters"]["input_type_train"] = "gray";
    j["input_parameters"]["input_type_rt"] = "nv12";
    CHECK(error_of(j).find("'nv12' cannot feed a model trained on 'gray'; with input_type_train gray the runtime type must be one of: gray") !=
          std::string::npos);
    j["input_parameters"]["input_type_train"] = "featuremap";
    j["input_parameters"]["input_type_rt"] = "rgb";
    CHECK(error_of(j).find("cannot feed") != std::string::npos);

    j = minimal();
    j["input_parameters"]["input_type_train"] = "rgb";
    j["input_parameters"]["input_type_rt"] = "rgb";
    j["input_parameters"]["input_space_and_range"] = "bt601_video";
    CHECK(error_of(j).find("bt601_video applies only to input_type_rt nv12") != std::string::npos);

    j = minimal();
    j["input_parameters"]["input_type_train"] = "rgb";
    j["input_parameters"]["input_type_rt"] = "rgb";
    j["input_parameters"]["mean_value"] = "1 2";
    j["input_parameters"]["norm_type"] = "data_mean";
    CHECK(error_of(j).find("has 2 values; rgb input needs 1 or 3") != std::string::npos);
    j["input_parameters"]["norm_type"] = "data_scale";
    j["input_parameters"]["scale_value"] = 0.5;
    CHECK(error_of(j).find("mean_value: is given but norm_type is data_scale") != std::string::npos);
    j["input_parameters"].erase("mean_value");
    j["input_parameters"]["scale_value"] = 0;
    CHECK(error_of(j).find("0 would erase the input") != std::string::npos);

    j = minimal();
    j["model_parameters"]["march"] = "bernoulli2";
    j["model_parameters"]["node_info"] = "conv1:int16";
    CHECK(error_of(j).find("bernoulli2 computes in int8 only") != std::string::npos);
    j["model_parameters"]["node_info"] = "conv1:int8";
    CHECK(error_of(j).empty());

    j = minimal();
    j["calibration_parameters"]["optimization"] = "set_model_output_int8,set_model_output_int16";
    CHECK(error_of(j).find("contradict") != std::string::npos);
    j = minimal();
    j["calibration_parameters"]["run_on_cpu"] = "a;b";
    j["calibration_parameters"]["run_on_bpu"] = "b";
    CHECK(error_of(j).find("node 'b' is also listed in run_on_bpu") != std::string::npos);
    j = minimal();
    j["calibration_parameters"]["calibration_file"] = "t.json";
    CHECK(error_of(j).find("only read by calibration_type: load") != std::string::npos);
    j["calibration_parameters"]["calibration_type"] = "load";
    CHECK(parse_convert_config(j, "t.yaml", "/b").calibration_file == "/b/t.json");

    // bias_correction needs real calibration data
    j = minimal();
    j["calibration_parameters"]["optimization"] = "bias_correction";
    CHECK(parse_convert_config(j, "t.yaml").optimization.bias_correction);
    j["calibration_parameters"]["calibration_type"] = "skip";
    CHECK(error_of(j).find("calibration_parameters.optimization: bias_correction needs calibration data") != std::string::npos);
    j["calibration_parameters"]["calibration_type"] = "load";
    CHECK(error_of(j).empty());  // load with cal_data_dir: the corrections are computed on that data
    j["calibration_parameters"].erase("cal_data_dir");
    CHECK(error_of(j).find("give cal_data_dir") != std::string::npos);
    j["calibration_parameters"]["optimization"] = "";
    CHECK(error_of(j).empty());  // load and skip need no data of their own
    j["calibration_parameters"]["calibration_type"] = "skip";
    CHECK(error_of(j).empty());
}

TEST_CASE("node_info short form") {
    json j = minimal();
    j["model_parameters"]["node_info"] = "conv1:int16; fc:int16";
    const ConvertConfig c = parse_convert_config(j, "t.yaml");
    CHECK(c.node_info.size() == 2);
    CHECK(c.node_info.at("fc").output_bits == 16);
    j["model_parameters"]["node_info"] = "conv1=int16";
    CHECK(error_of(j).find("is not of the form <node>:int16") != std::string::npos);
    j["model_parameters"]["node_info"] = "conv1:int4";
    CHECK(error_of(j).find("'int4' is not allowed") != std::string::npos);
}

TEST_CASE("text helpers") {
    CHECK(split(" a ; b;;c ", ";") == std::vector<std::string>{"a", "b", "c"});
    CHECK(edit_distance("kitten", "sitting") == 3);
    CHECK(nearest("zzzzzz", {"onnx_model", "march"}).empty());
}
