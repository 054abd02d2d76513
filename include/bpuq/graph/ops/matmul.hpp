// Matrix products: Gemm, MatMul (numpy batching), MatMulInteger and QLinearMatMul.
#pragma once

#include "conv.hpp"

BPUQ_NAMESPACE_BEGIN

namespace graph {
namespace ops {

inline void infer_gemm(const Node& n, const std::vector<InferInput>& in, std::vector<Value>& out, std::int64_t) {
    set_output_dtype(out, 0, DType::float32);
    if (in.size() < 2 || !in[0].known_shape() || !in[1].known_shape()) return;
    const Shape& a = in[0].shape();
    const Shape& b = in[1].shape();
    BPUQ_CHECK(a.size() == 2 && b.size() == 2, "graph.shape", n.describe() + " needs 2-D A and B");
    const std::int64_t M = n.attr_int("transA", 0) ? a[1] : a[0];
    const std::int64_t N = n.attr_int("transB", 0) ? b[0] : b[1];
    set_output(out, 0, DType::float32, {M, N});
}

inline void run_gemm(const Node& n, const std::vector<const Tensor*>& in, std::vector<Tensor>& out,
                     const ExecContext& ctx, std::int64_t) {
    const Tensor& A = need(n, in, 0);
    const Tensor& B = need(n, in, 1);
    check_float(n, A, "A");
    check_float(n, B, "B");
    BPUQ_CHECK(A.rank() == 2 && B.rank() == 2, "graph.shape",
               n.describe() + " needs 2-D A and B, got " + shape_to_string(A.shape()) + " and " + shape_to_string(B.shape()));
    const bool ta = n.attr_int("transA", 0) != 0, tb = n.attr_int("transB", 0) != 0;
    const float alpha = n.attr_float("alpha", 1.f), beta = n.attr_float("beta", 1.f);
    const std::int64_t M = ta ? A.dim(1) : A.dim(0), K = ta ? A.dim(0) : A.dim(1);
    const std::int64_t N = tb ? B.dim(0) : B.dim(1), KB = tb ? B.dim(1) : B.dim(0);
    BPUQ_CHECK(K == KB, "graph.shape",
               n.describe() + " inner dimensions differ: A " + shape_to_string(A.shape()) + ", B " + shape_to_string(B.shape()));
    out[0] = Tensor(DType::float32, {M, N});
    Eigen::Map<RowMatrix<float>> y(out[0].data<float>(), M, N);
    Eigen::Map<const RowMatrix<float>> a(A.data<float>(), A.dim(0), A.dim(1));
    Eigen::Map<const RowMatrix<float>> b(B.data<float>(), B.dim(0), B.dim(1));
    if (ta && tb) y.noalias() = a.transpose() * b.transpose();
    else if (ta) y.noalias() = a.transpose() * b;
    else if (tb) y.noalias() = a * b.transpose();
    else gemm(A.data<float>(), K, B.data<float>(), N, y.data(), N, M, N, K, false, ctx);
    if (alpha != 1.f) y *= alpha;
    if (const Tensor* C = opt(in, 2)) {
        check_float(n, *C, "C");
        const Shape cs = broadcast_shapes(n, C->shape(), {M, N});
        BPUQ_CHECK(cs == Shape({M, N}), "graph.shape",
                   n.describe() + " C " + shape_to_string(C->shape()) + " does not broadcast to " + shape_to_string({M, N}));
        const Shape st = broadcast_strides(C->shape(), {M, N});
        const float* c = C->data<float>();
        for (std::int64_t i = 0; i < M; ++i)
            for (std::int64_t j = 0; j < N; ++j) y(i, j) += beta * c[i * st[0] + j * st[1]];
    }
}

/// Output shape of numpy matmul (1-D operands promoted and the added axis removed).
inline Shape matmul_shape(const Node& n, Shape a, Shape b) {
    BPUQ_CHECK(!a.empty() && !b.empty(), "graph.shape", n.describe() + " operands must have rank >= 1");
    const bool a1 = a.size() == 1, b1 = b.size() == 1;
    if (a1) a.insert(a.begin(), 1);
    if (b1) b.push_back(1);
    BPUQ_CHECK(a.back() == b[b.size() - 2] || a.back() < 0 || b[b.size() - 2] < 0, "graph.shape",
               n.describe() + " inner dimensions differ: " + shape_to_string(a) + " x " + shape_to_string(b));
    Shape batch = broadcast_shapes(n, Shape(a.begin(), a.end() - 2), Shape(b.begin(), b.end() - 2));
    if (!a1) batch.push_back(a[a.size() - 2]);
    if (!b1) batch.push_back(b.back());
    return batch;
}

inline void infer_matmul(const Node& n, const std::vector<InferInput>& in, std::vector<Value>& out, std::int64_t) {
    const DType t = n.op_type == "MatMulInteger" ? DType::int32
                    : n.op_type == "QLinearMatMul" && in.size() > 7 && in[7].present() ? in[7].value->dtype
                                                                                       : DType::float32;
    set_output_dtype(out, 0, t);
    const std::size_t bi = n.op_type == "QLinearMatMul" ? 3 : 1;
    if (in.size() <= bi || !in[0].known_shape() || !in[bi].known_shape()) return;
    set_output(out, 0, t, matmul_shape(n, in[0].shape(), in[bi].shape()));
}

/// Batched numpy matmul of typed buffers.
template <class T>
void matmul_typed(const Node& n, const Tensor& A, const Tensor& B, Tensor& Y, const ExecContext& ctx) {
    Shape a = A.shape(), b = B.shape();
    if (a.size() == 1) a.insert(a.begin(), 1);
    if (b.size() == 1) b.push_back(1);
    const std::int64_t M = a[a.size() - 2], K = a.back(), N = b.back();
    const Shape batch = broadcast_shapes(n, Shape(a.begin(), a.end() - 2), Shape(b.begin(), b.end() - 2));
    const Shape sa = broadcast_strides(Shape(a.begin(), a.end() - 2), batch);
    const Shape sb = broadcast_strides(Shape(b.begin(), b.end() - 2), batch);
    const std::int64_t nbatch = product(batch);
    std::vector<std::int64_t> idx(batch.size(), 0);
    for (std::int64_t i = 0; i < nbatch; ++i) {
        std::int64_t oa = 0, ob = 0, r = i;
        for (std::size_t d = batch.size(); d-- > 0;) {
            const std::int64_t k = r % batch[d];
            r /= batch[d];
            oa += k * sa[d];
            ob += k * sb[d];
        }
        gemm(A.data<T>() + oa * M * K, K, B.data<T>() + ob * K * N, N, Y.data<T>() + i * M * N, N, M, N, K, false, ctx);
    }
}

inline void run_matmul(const Node& n, const std::vector<const Tensor*>& in, std::vector<Tensor>& out,
                       const ExecContext& ctx, std::int64_t) {
    const Tensor& A = need(n, in, 0);
    const Tensor& B = need(n, in, 1);
    check_float(n, A, "A");
    check_float(n, B, "B");
    out[0] = Tensor(DType::float32, matmul_shape(n, A.shape(), B.shape()));
    matmul_typed<float>(n, A, B, out[0], ctx);
}

/// (t - zp) widened to int32; zp per tensor or along `axis` (per row of A / column of B).
inline Tensor widen_minus_zero_point(const Node& n, const Tensor& t, const Tensor* zp, bool per_last_axis) {
    Tensor r(DType::int32, t.shape());
    dispatch_numeric(n, t.dtype(), [&](auto tag) {
        using T = decltype(tag);
        if constexpr (std::is_same<T, std::int8_t>::value || std::is_same<T, std::uint8_t>::value) {
            const T* s = t.data<T>();
            const std::int64_t nz = zp ? zp->numel() : 0;
            BPUQ_CHECK(!zp || zp->dtype() == t.dtype(), "graph.dtype", n.describe() + " zero point type differs from its tensor");
            const std::int64_t last = t.rank() ? t.dim(t.rank() - 1) : 1;
            const std::int64_t rows = t.rank() >= 2 ? t.dim(t.rank() - 2) : 1;
            for (std::int64_t i = 0; i < t.numel(); ++i) {
                std::int32_t z = 0;
                if (nz == 1) z = zp->data<T>()[0];
                else if (nz > 1) z = zp->data<T>()[per_last_axis ? i % last : (i / last) % rows];
                r.data<std::int32_t>()[i] = std::int32_t(s[i]) - z;
            }
        } else {
            BPUQ_THROW("graph.dtype", n.describe() + " operands must be int8 or uint8");
        }
    });
    return r;
}

inline void run_matmul_integer(const Node& n, const std::vector<const Tensor*>& in, std::vector<Tensor>& out,
                               const ExecContext& ctx, std::int64_t) {
    const Tensor a = widen_minus_zero_point(n, need(n, in, 0), opt(in, 2), false);
    const Tensor b = widen_minus_zero_point(n, need(n, in, 1), opt(in, 3), true);
    out[0] = Tensor(DType::int32, matmul_shape(n, a.shape(), b.shape()));
    matmul_typed<std::int32_t>(n, a, b, out[0], ctx);
}

inline void run_qlinear_matmul(const Node& n, const std::vector<const Tensor*>& in, std::vector<Tensor>& out,
                               const ExecContext& ctx, std::int64_t) {
    const Tensor a = widen_minus_zero_point(n, need(n, in, 0), opt(in, 2), false);
    const Tensor b = widen_minus_zero_point(n, need(n, in, 3), opt(in, 5), true);
    const std::vector<float> as = to_floats(n, need(n, in, 1), "a_scale");
    const std::vector<float> bs = to_floats(n, need(n, in, 4), "b_scale");
    const float ys = to_floats(n, need(n, in, 6), "y_scale")[0];
    const Tensor& yzp = need(n, in, 7);
    Tensor acc(DType::int32, matmul_shape(n, a.shape(), b.shape()));
    matmul_typed<std::int32_t>(n, a, b, acc, ctx);
    out[0] = Tensor(yzp.dtype(), acc.shape());
    const std::int64_t N = acc.dim(acc.rank() - 1);
    const std::int64_t M = acc.rank() >= 2 ? acc.dim(acc.rank() - 2) : 1;
    dispatch_numeric(n, yzp.dtype(), [&](auto tag) {
        using T = decltype(tag);
        const std::int32_t zp = std::int32_t(yzp.data<T>()[0]);
        for (std::int64_t i = 0; i < acc.numel(); ++i) {
            const double s = double(as[as.size() == 1 ? 0 : (i / N) % M]) * double(bs[bs.size() == 1 ? 0 : i % N]) / ys;
            out[0].data<T>()[i] = requantize_float<T>(double(acc.data<std::int32_t>()[i]) * s, zp);
        }
    });
}

}  // namespace ops
}  // namespace graph

BPUQ_NAMESPACE_END
