// Must not compile: policies in the wrong position.
#include <bpuq/core/quant_spec.hpp>
bpuq::QuantSpec<8, bpuq::PerTensor, bpuq::Symmetric>::storage_type x;
