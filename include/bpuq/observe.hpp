// Umbrella header of the observe layer: streaming calibration observers (std only).
#pragma once

#include "core.hpp"
#include "observe/histogram.hpp"
#include "observe/kl.hpp"
#include "observe/minmax.hpp"
#include "observe/mse.hpp"
#include "observe/observer.hpp"
#include "observe/percentile.hpp"
