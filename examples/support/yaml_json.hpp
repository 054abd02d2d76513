// Driver-side YAML reading (yaml-cpp) into the nlohmann::json the library's config parser takes.
#pragma once

#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include <bpuq/core/error.hpp>

namespace bpuq_driver {

/// YAML 1.2 core-schema typing of a plain (unquoted) scalar: bool, null, int, float or string.
inline nlohmann::json yaml_scalar_to_json(const YAML::Node& node) {
    const std::string s = node.Scalar();
    if (node.Tag() == "!") return s;  // quoted: always a string
    static const std::regex int_re(R"([-+]?[0-9]+)");
    static const std::regex float_re(R"([-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?)");
    if (s == "true" || s == "True" || s == "TRUE") return true;
    if (s == "false" || s == "False" || s == "FALSE") return false;
    if (s == "null" || s == "Null" || s == "NULL" || s == "~" || s.empty()) return nullptr;
    if (std::regex_match(s, int_re)) {
        try {
            return std::stoll(s);
        } catch (const std::out_of_range&) {
            return s;
        }
    }
    if (std::regex_match(s, float_re)) return std::stod(s);
    return s;
}

inline nlohmann::json yaml_to_json(const YAML::Node& node, const std::string& file) {
    switch (node.Type()) {
        case YAML::NodeType::Null:
        case YAML::NodeType::Undefined: return nullptr;
        case YAML::NodeType::Scalar: return yaml_scalar_to_json(node);
        case YAML::NodeType::Sequence: {
            nlohmann::json arr = nlohmann::json::array();
            for (const auto& item : node) arr.push_back(yaml_to_json(item, file));
            return arr;
        }
        case YAML::NodeType::Map: {
            nlohmann::json obj = nlohmann::json::object();
            for (const auto& kv : node) {
                const std::string key = kv.first.Scalar();
                if (obj.contains(key))
                    BPUQ_THROW("config.duplicate_key", "config " + file + ": line " +
                                                           std::to_string(kv.first.Mark().line + 1) + ": key '" + key +
                                                           "' appears twice in the same mapping");
                obj[key] = yaml_to_json(kv.second, file);
            }
            return obj;
        }
    }
    return nullptr;
}

/// Reads a YAML (.yaml/.yml) or JSON config file into JSON. Errors name the file and line.
inline nlohmann::json read_config_file(const std::string& path) {
    std::ifstream f(path);
    if (!f) BPUQ_THROW("config.file", "cannot open config file '" + path + "'");
    std::stringstream ss;
    ss << f.rdbuf();
    const std::string text = ss.str();
    const bool is_json = path.size() >= 5 && path.compare(path.size() - 5, 5, ".json") == 0;
    if (is_json) {
        try {
            return nlohmann::json::parse(text);
        } catch (const nlohmann::json::parse_error& e) {
            BPUQ_THROW("config.parse", "config " + path + ": not valid JSON: " + e.what());
        }
    }
    try {
        const YAML::Node root = YAML::Load(text);
        if (!root.IsMap()) BPUQ_THROW("config.parse", "config " + path + ": the top level must be a mapping of groups "
                                                      "(model_parameters, input_parameters, ...)");
        return yaml_to_json(root, path);
    } catch (const YAML::Exception& e) {
        BPUQ_THROW("config.parse", "config " + path + ": line " + std::to_string(e.mark.line + 1) + ", column " +
                                       std::to_string(e.mark.column + 1) + ": " + e.msg);
    }
}

/// JSON -> YAML text (block style; strings that YAML would read as another type are quoted),
/// for the configs bpuq_optimize writes. read_config_file reads the result back to the same JSON.
inline void json_to_yaml(const nlohmann::json& j, YAML::Emitter& out) {
    if (j.is_object()) {
        out << YAML::BeginMap;
        for (const auto& kv : j.items()) {
            out << YAML::Key << kv.key() << YAML::Value;
            json_to_yaml(kv.value(), out);
        }
        out << YAML::EndMap;
    } else if (j.is_array()) {
        out << YAML::Flow << YAML::BeginSeq;
        for (const auto& x : j) json_to_yaml(x, out);
        out << YAML::EndSeq;
    } else if (j.is_string()) {
        const std::string s = j.get<std::string>();
        const nlohmann::json back = yaml_scalar_to_json(YAML::Node(s));
        if (back.is_string()) out << s;
        else out << YAML::DoubleQuoted << s;
    } else if (j.is_boolean()) {
        out << (j.get<bool>() ? "true" : "false");
    } else if (j.is_null()) {
        out << YAML::Null;
    } else if (j.is_number_integer()) {
        out << j.get<long long>();
    } else {
        out << YAML::Precision(17) << j.get<double>();
    }
}

inline std::string json_to_yaml(const nlohmann::json& j) {
    YAML::Emitter out;
    json_to_yaml(j, out);
    return std::string(out.c_str()) + "\n";
}

}  // namespace bpuq_driver
