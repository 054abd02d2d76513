// The consumer program for the packaging tests: quantizes a few values through bpuq's API.
#include <bpuq/core.hpp>
#include <bpuq/quant.hpp>

#include <cstdio>

int main() {
    auto q = bpuq::Quantizer<bpuq::QuantSpec<8>>::from_range(-1.0f, 1.0f);
    const int a = q.quantize(0.25f), b = q.quantize(-2.0f);
    std::printf("consumer: quantize(0.25)=%d quantize(-2)=%d\n", a, b);
    return (a == 32 && b == -128) ? 0 : 1;
}
