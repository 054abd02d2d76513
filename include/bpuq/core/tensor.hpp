// Tensor (typed buffer + shape, owning or borrowed) and TensorView<T> (strided, non-owning).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "config.hpp"
#include "dtype.hpp"
#include "error.hpp"

BPUQ_NAMESPACE_BEGIN

using Shape = std::vector<std::int64_t>;

/// "[1x3x224x224]" — for messages.
inline std::string shape_to_string(const Shape& shape) {
    std::string s = "[";
    for (std::size_t i = 0; i < shape.size(); ++i) {
        if (i) s += 'x';
        s += std::to_string(shape[i]);
    }
    return s + "]";
}

/// Number of elements; an error for negative dims or a product that overflows int64 / size_t.
inline std::int64_t shape_numel(const Shape& shape) {
    std::int64_t n = 1;
    for (std::int64_t d : shape) {
        BPUQ_CHECK(d >= 0, "shape.negative", "shape " + shape_to_string(shape) + " has a negative dimension");
        BPUQ_CHECK(d == 0 || n <= std::numeric_limits<std::int64_t>::max() / d, "shape.overflow",
                   "shape " + shape_to_string(shape) + " has more elements than fit in 64 bits");
        n *= d;
    }
    return n;
}

/// Row-major (C order) strides, in elements.
inline Shape contiguous_strides(const Shape& shape) {
    Shape strides(shape.size(), 1);
    for (std::size_t i = shape.size(); i-- > 1;) strides[i - 1] = strides[i] * (shape[i] > 0 ? shape[i] : 1);
    return strides;
}

namespace detail {
constexpr std::size_t kTensorAlignment = 64;  // one cache line; every SIMD width we use
/// Larger requests are shape errors, not allocation attempts (and size arithmetic stays far
/// from overflow).
constexpr std::uint64_t kMaxTensorBytes = std::uint64_t(1) << 48;

struct AlignedDeleter {
    void operator()(std::byte* p) const noexcept {
        ::operator delete[](p, std::align_val_t(kTensorAlignment));
    }
};
}  // namespace detail

/// Non-owning, strided view of elements of type T (T may be const).
template <class T>
class TensorView {
public:
    TensorView() = default;
    TensorView(T* data, Shape shape) : data_(data), shape_(std::move(shape)), strides_(contiguous_strides(shape_)) {}
    TensorView(T* data, Shape shape, Shape strides)
        : data_(data), shape_(std::move(shape)), strides_(std::move(strides)) {}

    T* data() const noexcept { return data_; }
    const Shape& shape() const noexcept { return shape_; }
    const Shape& strides() const noexcept { return strides_; }
    std::size_t rank() const noexcept { return shape_.size(); }
    std::int64_t dim(std::size_t i) const noexcept { return shape_[i]; }
    std::int64_t numel() const { return shape_numel(shape_); }
    bool is_contiguous() const noexcept { return strides_ == contiguous_strides(shape_); }

    /// Element at a multi-index (no bounds check beyond BPUQ_ASSERT).
    template <class... I>
    T& operator()(I... idx) const noexcept {
        static_assert(sizeof...(I) > 0, "bpuq: TensorView::operator() needs at least one index");
        const std::int64_t index[] = {static_cast<std::int64_t>(idx)...};
        BPUQ_ASSERT(sizeof...(I) == shape_.size());
        std::int64_t off = 0;
        for (std::size_t i = 0; i < sizeof...(I); ++i) off += index[i] * strides_[i];
        return data_[off];
    }

    /// View of index `i` along axis 0.
    TensorView slice0(std::int64_t i) const {
        BPUQ_ASSERT(!shape_.empty() && i >= 0 && i < shape_[0]);
        return TensorView(data_ + i * strides_[0], Shape(shape_.begin() + 1, shape_.end()),
                          Shape(strides_.begin() + 1, strides_.end()));
    }

private:
    T* data_ = nullptr;
    Shape shape_;
    Shape strides_;
};

/// A dense C-order tensor. Copies share the buffer (like a handle); clone() copies the data.
/// A Tensor either owns 64-byte aligned memory or borrows caller memory (Tensor::borrow).
class Tensor {
public:
    Tensor() = default;

    /// Tag for the constructor that skips zero-filling (the caller overwrites every element).
    struct Uninitialized {};

    /// Allocates zero-initialized storage.
    Tensor(DType dtype, Shape shape) : Tensor(dtype, std::move(shape), Uninitialized{}) {
        if (bytes_) std::memset(data_, 0, bytes_);
    }

    /// Allocates storage without initializing it: for kernels that write every element
    /// (the float executor), where zero-filling large activations costs measurable time.
    Tensor(DType dtype, Shape shape, Uninitialized) : dtype_(dtype), shape_(std::move(shape)) {
        const std::int64_t n = shape_numel(shape_);
        const std::size_t elem = dtype_size(dtype_);
        BPUQ_CHECK(static_cast<std::uint64_t>(n) <= detail::kMaxTensorBytes / elem, "shape.overflow",
                   "tensor of shape " + shape_to_string(shape_) + " (" + dtype_name(dtype_) +
                       ") is larger than the 2^48-byte limit");
        bytes_ = static_cast<std::size_t>(n) * elem;
        std::byte* p = nullptr;
#if BPUQ_HAS_EXCEPTIONS
        try {
            p = static_cast<std::byte*>(::operator new[](bytes_ ? bytes_ : 1, std::align_val_t(detail::kTensorAlignment)));
        } catch (const std::bad_alloc&) {
            BPUQ_THROW("tensor.alloc", "cannot allocate " + std::to_string(bytes_) + " bytes for a tensor of shape " +
                                           shape_to_string(shape_));
        }
#else
        p = static_cast<std::byte*>(::operator new[](bytes_ ? bytes_ : 1, std::align_val_t(detail::kTensorAlignment)));
#endif
        storage_ = std::shared_ptr<std::byte>(p, detail::AlignedDeleter{});
        data_ = p;
    }

    /// Wrap caller memory without copying; the caller keeps it alive.
    static Tensor borrow(DType dtype, Shape shape, void* data) {
        Tensor t;
        t.dtype_ = dtype;
        t.shape_ = std::move(shape);
        t.bytes_ = static_cast<std::size_t>(shape_numel(t.shape_)) * dtype_size(dtype);
        t.data_ = static_cast<std::byte*>(data);
        return t;
    }

    /// A tensor of shape `shape` holding `values` (copied).
    template <class T>
    static Tensor from_vector(Shape shape, const std::vector<T>& values) {
        Tensor t(dtype_v<T>, std::move(shape));
        BPUQ_CHECK(static_cast<std::size_t>(t.numel()) == values.size(), "shape.mismatch",
                   "tensor of shape " + shape_to_string(t.shape()) + " needs " + std::to_string(t.numel()) +
                       " values, got " + std::to_string(values.size()));
        if (!values.empty()) std::memcpy(t.raw(), values.data(), t.bytes_);
        return t;
    }

    DType dtype() const noexcept { return dtype_; }
    const Shape& shape() const noexcept { return shape_; }
    std::size_t rank() const noexcept { return shape_.size(); }
    std::int64_t dim(std::size_t i) const noexcept { return shape_[i]; }
    std::int64_t numel() const noexcept {
        std::int64_t n = 1;
        for (auto d : shape_) n *= d;
        return n;
    }
    std::size_t nbytes() const noexcept { return bytes_; }
    bool empty() const noexcept { return data_ == nullptr; }
    bool owns_data() const noexcept { return static_cast<bool>(storage_); }

    void* raw() noexcept { return data_; }
    const void* raw() const noexcept { return data_; }

    template <class T>
    T* data() {
        check_type<T>();
        return reinterpret_cast<T*>(data_);
    }
    template <class T>
    const T* data() const {
        check_type<T>();
        return reinterpret_cast<const T*>(data_);
    }
    template <class T>
    TensorView<T> view() {
        return TensorView<T>(data<T>(), shape_);
    }
    template <class T>
    TensorView<const T> view() const {
        return TensorView<const T>(data<T>(), shape_);
    }

    /// Same data, new shape with the same element count (-1 is not resolved here).
    Tensor reshaped(Shape shape) const {
        BPUQ_CHECK(shape_numel(shape) == numel(), "shape.mismatch",
                   "cannot reshape " + shape_to_string(shape_) + " to " + shape_to_string(shape));
        Tensor t = *this;
        t.shape_ = std::move(shape);
        return t;
    }

    /// Deep copy into fresh owned storage.
    Tensor clone() const {
        Tensor t(dtype_, shape_);
        if (bytes_) std::memcpy(t.data_, data_, bytes_);
        return t;
    }

private:
    template <class T>
    void check_type() const {
        BPUQ_CHECK(dtype_v<T> == dtype_, "tensor.dtype",
                   std::string("tensor holds ") + dtype_name(dtype_) + ", accessed as " + dtype_name(dtype_v<T>));
    }

    DType dtype_ = DType::float32;
    Shape shape_;
    std::size_t bytes_ = 0;
    std::shared_ptr<std::byte> storage_;
    std::byte* data_ = nullptr;
};

BPUQ_NAMESPACE_END
