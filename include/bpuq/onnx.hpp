// Umbrella header of the onnx layer: import ONNX models into the graph IR and export them.
#pragma once

#include "graph.hpp"
#include "onnx/export.hpp"
#include "onnx/import.hpp"
#include "onnx/tensor_proto.hpp"
