// Umbrella header of the core layer: types, policies, QParams, fixed point, Tensor (std only).
#pragma once

#include "core/bit_traits.hpp"
#include "core/config.hpp"
#include "core/dtype.hpp"
#include "core/error.hpp"
#include "core/fixed_point.hpp"
#include "core/policy.hpp"
#include "core/qparams.hpp"
#include "core/quant_spec.hpp"
#include "core/tensor.hpp"
