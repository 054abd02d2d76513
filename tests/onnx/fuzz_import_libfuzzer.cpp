// libFuzzer entry point for the ONNX loader (build with clang: -DBPUQ_BUILD_FUZZERS=ON).
#include "fuzz_import.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    bpuq_test::fuzz_import_once(data, size);
    return 0;
}
