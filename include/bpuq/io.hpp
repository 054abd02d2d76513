// Umbrella header of the io layer: .npy files.
#pragma once

#include "io/npy.hpp"
