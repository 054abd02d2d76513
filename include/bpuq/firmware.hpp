// Umbrella of the dependency-free layers that make up the firmware single header.
#pragma once

#include "core.hpp"
#include "quant.hpp"
#include "observe.hpp"
#include "emul/program.hpp"
#include "emul/program_format.hpp"
#include "emul/runtime_input.hpp"
