// Must not compile: 16-bit tensors are symmetric on the BPU.
#include <bpuq/core/quant_spec.hpp>
bpuq::QuantSpec<16, bpuq::Asymmetric>::storage_type x;
