// The normative scalar integer kernels (the spec of the emulator; docs/ARITHMETIC.md "Kernels").
#pragma once

#include "params.hpp"
#include "reference/concat_resize.hpp"
#include "reference/conv2d.hpp"
#include "reference/eltwise.hpp"
#include "reference/gemm.hpp"
#include "reference/lut.hpp"
#include "reference/pooling.hpp"
