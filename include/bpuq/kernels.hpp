// Umbrella header of bpuq's integer kernels: scalar reference kernels and the xsimd SIMD kernels.
#pragma once

#include "core.hpp"
#include "quant.hpp"
#include "kernels/reference.hpp"
#include "kernels/simd/arch.hpp"
#include "kernels/context.hpp"
#include "kernels/dispatch.hpp"
#include "kernels/simd/conv2d.hpp"
#include "kernels/simd/quantize.hpp"
#include "kernels/simd/pooling.hpp"
#include "kernels/simd/concat_resize.hpp"
