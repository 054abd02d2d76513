// Umbrella header of the config layer: the Horizon-compatible conversion config.
#pragma once

#include "config/convert_config.hpp"
#include "config/text.hpp"
