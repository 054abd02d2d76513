// Built with -fno-exceptions -fno-rtti and only single_include/ on the include path: the
// firmware case. Plain checks (no test framework) so nothing third-party is needed.
#include <bpuq/bpuq.hpp>

#include <cstdio>

static int failures = 0;
#define EXPECT(cond)                                                       \
    do {                                                                   \
        if (!(cond)) {                                                     \
            std::printf("single header check failed: %s (line %d)\n", #cond, __LINE__); \
            ++failures;                                                    \
        }                                                                  \
    } while (0)

int main() {
    static_assert(BPUQ_HAS_EXCEPTIONS == 0, "this test must be built with -fno-exceptions");
    const bpuq::QuantizedMultiplier qm = bpuq::quantize_multiplier(0.25);
    EXPECT(qm.multiplier == (1 << 30) && qm.shift == -1);
    EXPECT(bpuq::requantize_value(400, qm, 10, -128, 127) == 110);
    EXPECT(bpuq::rounding_divide_by_pot(-3, 1) == -2);

    const bpuq::QParams p = bpuq::qparams_from_range(-1.0f, 1.0f, 8, true);
    const float in[5] = {-2.0f, -0.5f, 0.0f, 0.25f, 1.0f};
    std::int8_t out[5];
    bpuq::reference::quantize_span(in, out, 5, p.scale[0], p.zero_point[0], p.qmin(), p.qmax());
    EXPECT(out[0] == -128 && out[2] == 0 && out[3] == 32 && out[4] == 127);

    auto quantizer = bpuq::Quantizer<bpuq::QuantSpec<16>>::from_range(-4.0f, 4.0f);
    EXPECT(quantizer.quantize(4.0f) == 32767);

    std::printf("single header: %s (%d failures)\n", failures ? "FAILED" : "ok", failures);
    return failures ? 1 : 0;
}
