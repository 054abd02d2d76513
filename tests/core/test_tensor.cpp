// Tensor and TensorView: ownership, shapes, strides, dtype checks, overflow errors.
#include <doctest/doctest.h>

#include <bpuq/core/tensor.hpp>

#include <cstdint>
#include <limits>

using namespace bpuq;

TEST_CASE("owning tensors are zeroed, aligned, and shared by copy") {
    Tensor t(DType::float32, {2, 3, 4});
    CHECK(t.numel() == 24);
    CHECK(t.nbytes() == 96);
    CHECK(t.owns_data());
    CHECK(reinterpret_cast<std::uintptr_t>(t.raw()) % 64 == 0);
    for (int i = 0; i < 24; ++i) CHECK(t.data<float>()[i] == 0.0f);
    Tensor alias = t;
    alias.data<float>()[5] = 7.0f;
    CHECK(t.data<float>()[5] == 7.0f);
    Tensor deep = t.clone();
    deep.data<float>()[5] = 1.0f;
    CHECK(t.data<float>()[5] == 7.0f);
}

TEST_CASE("borrowed tensors and views do not own memory") {
    std::int8_t buf[6] = {1, 2, 3, 4, 5, 6};
    Tensor t = Tensor::borrow(DType::int8, {2, 3}, buf);
    CHECK_FALSE(t.owns_data());
    auto v = t.view<std::int8_t>();
    CHECK(v(1, 2) == 6);
    CHECK(v.slice0(1)(0) == 4);
    // a transposed (strided) view
    TensorView<std::int8_t> tr(buf, {3, 2}, {1, 3});
    CHECK_FALSE(tr.is_contiguous());
    CHECK(tr(2, 1) == 6);
    CHECK(tr(0, 1) == 4);
}

TEST_CASE("dtype mismatches and bad shapes are errors") {
    Tensor t(DType::int16, {4});
    CHECK_THROWS_WITH_AS(t.data<float>(), doctest::Contains("holds int16, accessed as float32"), bpuq::Error);
    CHECK_THROWS_WITH_AS(Tensor(DType::float32, {-1, 3}), doctest::Contains("negative"), bpuq::Error);
    const std::int64_t big = std::numeric_limits<std::int64_t>::max() / 2;
    CHECK_THROWS_WITH_AS(Tensor(DType::float32, {big, 4}), doctest::Contains("shape.overflow"), bpuq::Error);
    CHECK_THROWS_AS(Tensor(DType::float32, {big / 2, 2}), bpuq::Error);  // fits int64, not memory
    CHECK_THROWS_WITH_AS(t.reshaped({3}), doctest::Contains("cannot reshape [4] to [3]"), bpuq::Error);
    CHECK_THROWS_AS(Tensor::from_vector<float>({3}, {1.0f, 2.0f}), bpuq::Error);
}

TEST_CASE("from_vector, reshape and strides") {
    Tensor t = Tensor::from_vector<std::int32_t>({2, 2}, {1, 2, 3, 4});
    CHECK(t.dtype() == DType::int32);
    Tensor r = t.reshaped({4});
    CHECK(r.data<std::int32_t>()[3] == 4);
    CHECK(contiguous_strides({2, 3, 4}) == Shape{12, 4, 1});
    CHECK(shape_to_string({1, 3, 224, 224}) == "[1x3x224x224]");
    Tensor empty(DType::float32, {0, 5});
    CHECK(empty.numel() == 0);
    CHECK(std::string(dtype_name(DType::boolean)) == "bool");
    CHECK(dtype_size(DType::float16) == 2);
}
