// CalibrationSet: reading .npy and raw sample folders, and naming the file in every error.
#include <doctest/doctest.h>

#include <bpuq/io/calibration_data.hpp>

#include <filesystem>
#include <fstream>
#include <limits>

using namespace bpuq;
namespace fs = std::filesystem;

namespace {
struct TempDir {
    fs::path path;
    explicit TempDir(const std::string& name) : path(fs::temp_directory_path() / ("bpuq_calib_" + name)) {
        fs::remove_all(path);
        fs::create_directories(path);
    }
    ~TempDir() { fs::remove_all(path); }
    std::string sub(const std::string& s) const {
        fs::create_directories(path / s);
        return (path / s).string();
    }
};
void write_raw(const std::string& file, const void* data, std::size_t n) {
    std::ofstream(file, std::ios::binary).write(static_cast<const char*>(data), static_cast<std::streamsize>(n));
}
}  // namespace

TEST_CASE("raw uint8 and float32 files and .npy samples, in name order") {
    TempDir tmp("ok");
    const std::string img = tmp.sub("img"), feat = tmp.sub("feat_f32");
    for (int i = 0; i < 3; ++i) {
        std::uint8_t px[12];
        for (int k = 0; k < 12; ++k) px[k] = static_cast<std::uint8_t>(i * 12 + k);
        write_raw(img + "/s" + std::to_string(i) + ".rgb", px, sizeof px);
        io::write_npy(feat + "/s" + std::to_string(i) + ".npy", Tensor::from_vector<float>({4}, {1.0f * i, 2, 3, 4}));
    }
    write_raw(img + "/.hidden", "x", 1);  // ignored
    io::CalibrationSet set({{"image", img, "uint8", {1, 3, 2, 2}}, {"feature", feat, "float32", {1, 4}}});
    REQUIRE(set.size() == 3);
    const auto s2 = set.load_sample(2);
    CHECK(s2[0].shape() == Shape{1, 3, 2, 2});
    CHECK(s2[0].data<float>()[0] == 24.0f);
    CHECK(s2[1].shape() == Shape{1, 4});  // batch dimension added
    CHECK(s2[1].data<float>()[0] == 2.0f);
    CHECK(set.load_raw(0, 1).dtype() == DType::uint8);
}

TEST_CASE("errors name the folder or file and what was expected") {
    TempDir tmp("bad");
    const std::string empty = tmp.sub("empty");
    CHECK_THROWS_WITH_AS(io::CalibrationSet({{"x", empty, "uint8", {1, 4}}}), doctest::Contains("contains no sample files"), bpuq::Error);
    CHECK_THROWS_WITH_AS(io::CalibrationSet({{"x", empty + "/nope", "uint8", {1, 4}}}), doctest::Contains("is not a folder"), bpuq::Error);
    CHECK_THROWS_WITH_AS(io::CalibrationSet({{"x", empty, "float16", {1, 4}}}), doctest::Contains("cal_data_type 'float16'"), bpuq::Error);

    const std::string raw = tmp.sub("raw");
    const float three[3] = {1, 2, 3};
    write_raw(raw + "/a.bin", three, sizeof three);
    io::CalibrationSet set({{"x", raw, "float32", {1, 4}}});
    CHECK_THROWS_WITH_AS(set.load(0, 0), doctest::Contains("has 12 bytes but input 'x' of shape [1x4] as float32 needs 16"), bpuq::Error);

    const std::string nan = tmp.sub("nan");
    const float bad[4] = {1, std::numeric_limits<float>::quiet_NaN(), 0, 0};
    write_raw(nan + "/a.bin", bad, sizeof bad);
    io::CalibrationSet nanset({{"x", nan, "float32", {1, 4}}});
    CHECK_THROWS_WITH_AS(nanset.load(0, 0), doctest::Contains("non-finite value (nan) at element 1"), bpuq::Error);

    const std::string shape = tmp.sub("shape");
    io::write_npy(shape + "/a.npy", Tensor::from_vector<float>({2, 2}, {1, 2, 3, 4}));
    io::CalibrationSet shapeset({{"x", shape, "float32", {1, 4}}});
    CHECK_THROWS_WITH_AS(shapeset.load(0, 0), doctest::Contains("has shape [2x2] but input 'x' needs [1x4]"), bpuq::Error);

    const std::string two = tmp.sub("two");
    write_raw(two + "/a.bin", three, sizeof three);
    write_raw(two + "/b.bin", three, sizeof three);
    CHECK_THROWS_WITH_AS(io::CalibrationSet({{"a", raw, "float32", {1, 4}}, {"b", two, "float32", {1, 4}}}),
                         doctest::Contains("has 2 samples but"), bpuq::Error);
}
