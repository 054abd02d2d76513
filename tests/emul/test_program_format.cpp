// The .bpuq format: exact round trip, and every truncation or corruption is a Status, never a crash.
#include <doctest/doctest.h>

#include <bpuq/emul/program_format.hpp>

#include <random>

#include "test_support.hpp"

using namespace bpuq;
using namespace bpuq::emul;

namespace {

Program sample_program() {
    Program p;
    p.metadata["producer"] = "bpuq test";
    p.metadata["source"] = "tiny.onnx";
    ProgramTensor in{"input", DType::int8, {1, 2, 3, 3}, {8, -1, {0.05f}, {-3}}, false, {}};
    ProgramTensor w{"w", DType::int8, {4, 2, 1, 1}, {8, 0, {0.01f, 0.02f, 0.03f, 0.04f}, {0, 0, 0, 0}}, true, {}};
    for (int i = 0; i < 8; ++i) w.data.push_back(static_cast<std::uint8_t>(i * 31));
    ProgramTensor b{"b", DType::int32, {4}, {}, true, std::vector<std::uint8_t>(16, 7)};
    ProgramTensor y{"y", DType::int8, {1, 4, 3, 3}, {8, -1, {0.1f}, {5}}, false, {}};
    ProgramTensor out{"out", DType::float32, {1, 4, 3, 3}, {}, false, {}};
    p.tensors = {in, w, b, y, out};
    p.inputs = {0};
    p.outputs = {4};
    ProgramNode conv{"conv1", "conv2d", {0, 1, 2}, {3}, {}};
    conv.attrs["strides"] = AttrValue::of_ints({1, 1});
    conv.attrs["pads"] = AttrValue::of_ints({0, 0, 0, 0});
    conv.attrs["multiplier"] = AttrValue::of_ints({1 << 30, 1 << 30, 1 << 30, 1 << 30});
    conv.attrs["note"] = AttrValue::of_string("relu fused");
    conv.attrs["clip"] = AttrValue::of_floats({0.0f, 6.0f});
    ProgramNode deq{"deq", "dequantize", {3}, {4}, {}};
    p.nodes = {conv, deq};
    return p;
}

void check_equal(const Program& a, const Program& b) {
    CHECK(a.metadata == b.metadata);
    REQUIRE(a.tensors.size() == b.tensors.size());
    for (std::size_t i = 0; i < a.tensors.size(); ++i) {
        CHECK(a.tensors[i].name == b.tensors[i].name);
        CHECK(a.tensors[i].dtype == b.tensors[i].dtype);
        CHECK(a.tensors[i].shape == b.tensors[i].shape);
        CHECK(a.tensors[i].quant.bits == b.tensors[i].quant.bits);
        CHECK(a.tensors[i].quant.axis == b.tensors[i].quant.axis);
        CHECK(a.tensors[i].quant.scales == b.tensors[i].quant.scales);
        CHECK(a.tensors[i].quant.zero_points == b.tensors[i].quant.zero_points);
        CHECK(a.tensors[i].data == b.tensors[i].data);
    }
    CHECK(a.inputs == b.inputs);
    CHECK(a.outputs == b.outputs);
    REQUIRE(a.nodes.size() == b.nodes.size());
    for (std::size_t i = 0; i < a.nodes.size(); ++i) {
        CHECK(a.nodes[i].name == b.nodes[i].name);
        CHECK(a.nodes[i].op == b.nodes[i].op);
        CHECK(a.nodes[i].inputs == b.nodes[i].inputs);
        CHECK(a.nodes[i].outputs == b.nodes[i].outputs);
        CHECK(a.nodes[i].attrs == b.nodes[i].attrs);
    }
}

/// Re-seal a modified payload with a correct CRC so validation beyond the checksum is exercised.
void reseal(std::vector<std::uint8_t>& bytes) {
    const std::uint32_t crc = bpuq::emul::detail::crc32(bytes.data() + kProgramHeaderSize, bytes.size() - kProgramHeaderSize);
    for (int i = 0; i < 4; ++i) bytes[24 + static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(crc >> (8 * i));
    const std::uint64_t payload = bytes.size() - kProgramHeaderSize;
    for (int i = 0; i < 8; ++i) bytes[16 + static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(payload >> (8 * i));
}

}  // namespace

TEST_CASE("round trip is exact and constants are 8-byte aligned") {
    const Program p = sample_program();
    const auto bytes = serialize_program(p);
    CHECK(std::string(bytes.begin(), bytes.begin() + 8) == "BPUQPROG");
    Program q;
    std::string err;
    REQUIRE_MESSAGE(deserialize_program(bytes.data(), bytes.size(), q, &err) == Status::ok, err);
    check_equal(p, q);
    CHECK(serialize_program(q) == bytes);  // deterministic
}

TEST_CASE("every truncation is an error, never a crash") {
    const auto bytes = serialize_program(sample_program());
    for (std::size_t n = 0; n < bytes.size(); ++n) {
        Program q;
        std::string err;
        REQUIRE(deserialize_program(bytes.data(), n, q, &err) != Status::ok);
        REQUIRE_FALSE(err.empty());
    }
}

TEST_CASE("corrupted bytes are caught by the checksum; resealed corruption by validation") {
    const auto good = serialize_program(sample_program());
    auto& g = bpuq_test::rng();
    std::uniform_int_distribution<std::size_t> pos(kProgramHeaderSize, good.size() - 1);
    std::uniform_int_distribution<int> byte(0, 255);
    int resealed_rejected = 0, resealed_accepted = 0;
    for (int trial = 0; trial < 3000; ++trial) {
        auto bytes = good;
        const std::size_t at = pos(g);
        const auto old = bytes[at];
        bytes[at] = static_cast<std::uint8_t>(byte(g));
        if (bytes[at] == old) continue;
        Program q;
        std::string err;
        REQUIRE(deserialize_program(bytes.data(), bytes.size(), q, &err) == Status::corrupt_data);
        CHECK(err.find("checksum") != std::string::npos);
        reseal(bytes);  // now only structural validation stands between the bytes and the program
        if (deserialize_program(bytes.data(), bytes.size(), q, &err) == Status::ok) ++resealed_accepted;
        else ++resealed_rejected;
    }
    MESSAGE("resealed corruptions: " << resealed_rejected << " rejected, " << resealed_accepted
                                     << " accepted (changed values that are still valid)");
    CHECK(resealed_rejected > 0);
}

TEST_CASE("semantic errors name what is wrong") {
    auto expect = [](Program p, Status s, const char* fragment) {
        const auto bytes = serialize_program(p);
        Program q;
        std::string err;
        CHECK(deserialize_program(bytes.data(), bytes.size(), q, &err) == s);
        CHECK_MESSAGE(err.find(fragment) != std::string::npos, err);
    };
    Program p = sample_program();
    std::swap(p.nodes[0], p.nodes[1]);
    expect(p, Status::corrupt_data, "reads tensor 'y' before anything produces it");
    p = sample_program();
    p.nodes[1].outputs = {3};
    expect(p, Status::corrupt_data, "writes tensor 'y' which already has a value");
    p = sample_program();
    p.tensors[1].quant.scales.pop_back();
    p.tensors[1].quant.zero_points.pop_back();
    expect(p, Status::corrupt_data, "has 3 scales, expected 4");
    p = sample_program();
    p.tensors[1].data.pop_back();
    expect(p, Status::corrupt_data, "holds 7 bytes, its shape and dtype need 8");
    p = sample_program();
    p.tensors[3].quant.scales[0] = 0.0f;
    expect(p, Status::corrupt_data, "non-positive or non-finite scale");
    p = sample_program();
    p.outputs = {3, 4};
    p.nodes.pop_back();
    expect(p, Status::corrupt_data, "program output 'out' is never produced");
    p = sample_program();
    p.nodes[0].inputs[0] = 99;
    expect(p, Status::corrupt_data, "bad tensor index");

    auto bytes = serialize_program(sample_program());
    bytes[8] = 2;  // major version 2
    Program q;
    std::string err;
    CHECK(deserialize_program(bytes.data(), bytes.size(), q, &err) == Status::unsupported);
    CHECK(err.find("format version 2.0") != std::string::npos);
    bytes = serialize_program(sample_program());
    bytes[0] = 'X';
    CHECK(deserialize_program(bytes.data(), bytes.size(), q, &err) == Status::corrupt_data);
    CHECK(err.find("bad magic") != std::string::npos);
}
