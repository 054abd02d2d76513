// Calibration data folders (SPEC §1.1 cal_data_dir): one folder per model input holding .npy files
// or raw numpy.tofile dumps, read lazily one sample at a time (memory never grows with the count).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "npy.hpp"

BPUQ_NAMESPACE_BEGIN
namespace io {

/// What one model input expects from its calibration folder.
struct CalibrationInputSpec {
    std::string name;       ///< model input name (for messages)
    std::string dir;        ///< folder of samples
    std::string raw_dtype;  ///< dtype of raw (non-.npy) files: float32 | uint8 | int8 | int16 | int32
    Shape shape;            ///< the model input's shape (batch 1), e.g. {1, 3, 224, 224}
};

inline DType calibration_dtype(const std::string& name) {
    if (name == "float32") return DType::float32;
    if (name == "uint8") return DType::uint8;
    if (name == "int8") return DType::int8;
    if (name == "int16") return DType::int16;
    if (name == "int32") return DType::int32;
    BPUQ_THROW("calibration.dtype", "cal_data_type '" + name + "' is not one of float32, uint8, int8, int16, int32");
}

namespace detail {
template <class T>
void widen_to_float(const T* src, float* dst, std::int64_t n) {
    for (std::int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(src[i]);
}
}  // namespace detail

/// Converts a numeric tensor to float32 (values kept; float64 rounded).
inline Tensor to_float32(const Tensor& t) {
    if (t.dtype() == DType::float32) return t;
    Tensor out(DType::float32, t.shape());
    float* dst = out.data<float>();
    const std::int64_t n = t.numel();
    switch (t.dtype()) {
        case DType::float64: detail::widen_to_float(t.data<double>(), dst, n); break;
        case DType::uint8: detail::widen_to_float(t.data<std::uint8_t>(), dst, n); break;
        case DType::int8: detail::widen_to_float(t.data<std::int8_t>(), dst, n); break;
        case DType::int16: detail::widen_to_float(t.data<std::int16_t>(), dst, n); break;
        case DType::uint16: detail::widen_to_float(t.data<std::uint16_t>(), dst, n); break;
        case DType::int32: detail::widen_to_float(t.data<std::int32_t>(), dst, n); break;
        case DType::int64: detail::widen_to_float(t.data<std::int64_t>(), dst, n); break;
        default:
            BPUQ_THROW("tensor.dtype", std::string("cannot convert a ") + dtype_name(t.dtype()) + " tensor to float32");
    }
    return out;
}

/// The samples of every input's folder, matched by position in name order. Files are read when
/// a sample is requested, and every value is checked for NaN/Inf.
class CalibrationSet {
public:
    explicit CalibrationSet(std::vector<CalibrationInputSpec> inputs) : inputs_(std::move(inputs)) {
        BPUQ_CHECK(!inputs_.empty(), "calibration.inputs", "no model inputs to calibrate");
        for (const auto& in : inputs_) {
            namespace fs = std::filesystem;
            std::error_code ec;
            BPUQ_CHECK(fs::is_directory(in.dir, ec), "calibration.dir",
                       "cal_data_dir '" + in.dir + "' for input '" + in.name + "' is not a folder");
            calibration_dtype(in.raw_dtype);  // validates the name
            std::vector<std::string> files;
            for (const auto& e : fs::directory_iterator(in.dir)) {
                const std::string fname = e.path().filename().string();
                if (fname.empty() || fname[0] == '.' || !e.is_regular_file()) continue;
                files.push_back(e.path().string());
            }
            std::sort(files.begin(), files.end());
            BPUQ_CHECK(!files.empty(), "calibration.empty",
                       "cal_data_dir '" + in.dir + "' for input '" + in.name + "' contains no sample files");
            files_.push_back(std::move(files));
        }
        for (std::size_t i = 1; i < files_.size(); ++i)
            BPUQ_CHECK(files_[i].size() == files_[0].size(), "calibration.count",
                       "cal_data_dir '" + inputs_[i].dir + "' has " + std::to_string(files_[i].size()) + " samples but '" +
                           inputs_[0].dir + "' has " + std::to_string(files_[0].size()) + "; every input needs one file per sample");
    }

    /// A set held in memory (tensors already in the model's shape, one vector per input, the same
    /// number of samples each) — e.g. the random samples of calibration_type: skip.
    static CalibrationSet in_memory(std::vector<CalibrationInputSpec> inputs, std::vector<std::vector<Tensor>> samples) {
        BPUQ_CHECK(!inputs.empty() && samples.size() == inputs.size() && !samples[0].empty(), "calibration.inputs",
                   "an in-memory calibration set needs one non-empty sample list per input");
        CalibrationSet s;
        for (std::size_t i = 0; i < inputs.size(); ++i) {
            BPUQ_CHECK(samples[i].size() == samples[0].size(), "calibration.count",
                       "in-memory samples of input '" + inputs[i].name + "' differ in count from input '" + inputs[0].name + "'");
            std::vector<std::string> names;
            for (std::size_t k = 0; k < samples[i].size(); ++k) {
                BPUQ_CHECK(samples[i][k].shape() == inputs[i].shape, "calibration.shape",
                           "in-memory sample " + std::to_string(k) + " of input '" + inputs[i].name + "' has shape " +
                               shape_to_string(samples[i][k].shape()) + ", the input needs " + shape_to_string(inputs[i].shape));
                names.push_back("<memory sample " + std::to_string(k) + " of " + inputs[i].name + ">");
            }
            s.files_.push_back(std::move(names));
        }
        s.inputs_ = std::move(inputs);
        s.memory_ = std::move(samples);
        return s;
    }
    bool is_in_memory() const { return !memory_.empty(); }

    std::size_t size() const { return files_[0].size(); }
    std::size_t input_count() const { return inputs_.size(); }
    const std::string& file(std::size_t input, std::size_t index) const { return files_[input][index]; }
    const CalibrationInputSpec& input(std::size_t i) const { return inputs_[i]; }

    /// Sample `index` of input `input` in its stored dtype and the model's shape.
    Tensor load_raw(std::size_t input, std::size_t index) const {
        if (!memory_.empty()) return memory_[input][index];
        const CalibrationInputSpec& spec = inputs_[input];
        const std::string& path = files_[input][index];
        Tensor t;
        if (path.size() >= 4 && path.compare(path.size() - 4, 4, ".npy") == 0) {
            t = read_npy(path);
            // accept the sample with or without the leading batch dimension of 1
            Shape s = t.shape();
            if (s.size() + 1 == spec.shape.size() && spec.shape[0] == 1) s.insert(s.begin(), 1);
            BPUQ_CHECK(s == spec.shape, "calibration.shape",
                       "'" + path + "' has shape " + shape_to_string(t.shape()) + " but input '" + spec.name + "' needs " +
                           shape_to_string(spec.shape));
            t = t.reshaped(spec.shape);
        } else {
            const DType dt = calibration_dtype(spec.raw_dtype);
            const std::uint64_t expected = static_cast<std::uint64_t>(shape_numel(spec.shape)) * dtype_size(dt);
            std::error_code ec;
            const std::uint64_t actual = std::filesystem::file_size(path, ec);
            BPUQ_CHECK(!ec && actual == expected, "calibration.size",
                       "raw file '" + path + "' has " + std::to_string(actual) + " bytes but input '" + spec.name +
                           "' of shape " + shape_to_string(spec.shape) + " as " + spec.raw_dtype + " needs " +
                           std::to_string(expected) + " (check cal_data_type, input_shape, or the _f32 folder-name rule)");
            t = Tensor(dt, spec.shape);
            std::ifstream f(path, std::ios::binary);
            f.read(static_cast<char*>(t.raw()), static_cast<std::streamsize>(expected));
            BPUQ_CHECK(f.good(), "calibration.read", "failed reading '" + path + "'");
        }
        return t;
    }

    /// Sample `index` of input `input` as float32, with NaN/Inf rejected.
    Tensor load(std::size_t input, std::size_t index) const {
        Tensor t = to_float32(load_raw(input, index));
        const float* p = t.data<float>();
        for (std::int64_t i = 0; i < t.numel(); ++i)
            BPUQ_CHECK(std::isfinite(p[i]), "calibration.nonfinite",
                       "'" + file(input, index) + "' holds a non-finite value (" + std::to_string(p[i]) + ") at element " +
                           std::to_string(i) + "; calibration data must be finite");
        if (input < transforms_.size() && transforms_[input]) t = transforms_[input](t);
        return t;
    }

    /// Applies `f` to every sample of input `input` that load() returns — e.g. the conversion of
    /// training-colour samples to an NV12/YUV runtime input (flow/colour_conversion.hpp).
    void set_transform(std::size_t input, std::function<Tensor(const Tensor&)> f) {
        BPUQ_CHECK(input < inputs_.size(), "calibration.inputs", "set_transform: no input " + std::to_string(input));
        transforms_.resize(inputs_.size());
        transforms_[input] = std::move(f);
    }

    /// All inputs of sample `index`.
    std::vector<Tensor> load_sample(std::size_t index) const {
        std::vector<Tensor> out;
        for (std::size_t i = 0; i < inputs_.size(); ++i) out.push_back(load(i, index));
        return out;
    }

private:
    CalibrationSet() = default;
    std::vector<CalibrationInputSpec> inputs_;
    std::vector<std::vector<std::string>> files_;  ///< file paths (or labels of in-memory samples)
    std::vector<std::vector<Tensor>> memory_;      ///< in-memory samples, per input (empty = files)
    std::vector<std::function<Tensor(const Tensor&)>> transforms_;  ///< per input, empty = none
};

}  // namespace io
BPUQ_NAMESPACE_END
