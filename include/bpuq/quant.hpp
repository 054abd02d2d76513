// Umbrella header of the quant layer: scalar quantize/dequantize/requantize, Quantizer, output stages.
#pragma once

#include "core.hpp"
#include "quant/output_stages.hpp"
#include "quant/quantize.hpp"
#include "quant/quantizer.hpp"
#include "quant/rounding.hpp"
