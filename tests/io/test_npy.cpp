// .npy round trips for every supported dtype, real files written by NumPy, malformed headers.
#include <doctest/doctest.h>

#include <bpuq/io/npy.hpp>

#include <cstdio>
#include <string>
#include <vector>

#include "test_support.hpp"

using namespace bpuq;

namespace {
template <class T>
void round_trip(Shape shape) {
    Tensor t(dtype_v<T>, shape);
    T* p = t.data<T>();
    for (std::int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<T>(i * 7 - 20);
    const auto bytes = io::serialize_npy(t);
    // numpy requires the data to start 64-byte aligned
    const std::size_t header_len = bytes[8] | (bytes[9] << 8);
    CHECK((10 + header_len) % 64 == 0);
    Tensor r = io::parse_npy(bytes.data(), bytes.size(), "memory");
    REQUIRE(r.dtype() == t.dtype());
    REQUIRE(r.shape() == t.shape());
    for (std::int64_t i = 0; i < t.numel(); ++i) CHECK(r.data<T>()[i] == p[i]);
}

std::vector<std::uint8_t> with_header(const std::string& header, std::size_t payload) {
    std::string b("\x93NUMPY\x01\x00", 8);
    b += char(header.size());
    b += char(0);
    b += header;
    b.append(payload, '\0');
    return std::vector<std::uint8_t>(b.begin(), b.end());
}

std::string error_id(const std::vector<std::uint8_t>& b) {
    try {
        io::parse_npy(b.data(), b.size(), "bad.npy");
    } catch (const Error& e) {
        CHECK(std::string(e.what()).find("bad.npy") != std::string::npos);
        return e.id();
    }
    return "";
}
}  // namespace

TEST_CASE("npy: round trip of every supported dtype and rank") {
    round_trip<float>({2, 3, 4});
    round_trip<std::uint8_t>({5});
    round_trip<std::int8_t>({3, 1});
    round_trip<std::int16_t>({2, 2, 2, 2});
    round_trip<std::int32_t>({7});
    round_trip<std::int64_t>({1, 6});
    round_trip<float>({});      // scalar
    round_trip<float>({0, 3});  // empty
}

TEST_CASE("npy: file round trip and writer errors") {
    Tensor t = Tensor::from_vector<float>({2, 2}, {1.f, -2.f, 3.5f, 4.f});
    const std::string path = "bpuq_test_npy_roundtrip.npy";
    io::write_npy(path, t);
    Tensor r = io::read_npy(path);
    std::remove(path.c_str());
    REQUIRE(r.shape() == Shape{2, 2});
    CHECK(r.data<float>()[2] == 3.5f);
    CHECK_THROWS_AS(io::read_npy("/nonexistent/x.npy"), Error);
    CHECK_THROWS_AS(io::write_npy("/nonexistent/dir/x.npy", t), Error);
}

TEST_CASE("npy: reads NumPy-written reference files") {
    const std::string p = bpuq_test::data_dir() + "/reference/resnet8_fp32/inputs.npy";
    if (!bpuq_test::path_exists(p)) {
        MESSAGE("skipped: " << p << " missing (set BPUQ_DATA_DIR)");
        return;
    }
    Tensor t = io::read_npy(p);
    CHECK(t.dtype() == DType::float32);
    CHECK(t.shape() == Shape{8, 3, 32, 32});
    float mx = 0;
    for (std::int64_t i = 0; i < t.numel(); ++i) mx = std::max(mx, t.data<float>()[i]);
    CHECK(mx > 1.f);  // raw 0..255 pixels
    CHECK(mx <= 255.f);
}

TEST_CASE("npy: malformed files are errors that name the file") {
    CHECK(error_id({1, 2, 3}) == "npy.magic");
    CHECK(error_id(with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", 8)) == "npy.truncated");
    CHECK(error_id(with_header("{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }", 4)) == "npy.dtype");
    CHECK(error_id(with_header("{'descr': '<f4', 'fortran_order': True, 'shape': (1,), }", 4)) == "npy.fortran");
    CHECK(error_id(with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (a,), }", 4)) == "npy.header");
    CHECK(error_id(with_header("{'descr': '<f4', 'fortran_order': False }", 4)) == "npy.header");
    CHECK(error_id(with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999,), }", 4)) ==
          "npy.header");
    auto b = with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", 4);
    b[8] = 200;  // header longer than the file
    CHECK(error_id(b) == "npy.truncated");
    b[6] = 9;
    CHECK(error_id(b) == "npy.version");
    // a well-formed one parses
    CHECK(error_id(with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 1), }", 8)).empty());
}
