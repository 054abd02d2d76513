// Umbrella header of the graph layer: IR, shape inference, float executor, passes.
#pragma once

#include "graph/context.hpp"
#include "graph/executor.hpp"
#include "graph/ir.hpp"
#include "graph/op_registry.hpp"
#include "graph/passes.hpp"
#include "graph/shape_inference.hpp"
