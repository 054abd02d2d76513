// Umbrella header of the observe layer: streaming calibration observers.
#pragma once

#include "core.hpp"
