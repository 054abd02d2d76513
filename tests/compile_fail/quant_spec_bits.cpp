// Must not compile: a 12-bit QuantSpec.
#include <bpuq/core/quant_spec.hpp>
bpuq::QuantSpec<12>::storage_type x;
