// Randomized mutation of real .onnx files (bit flips, byte overwrites with interesting
// values, truncation, duplicated chunks): the loader must only ever throw bpuq::Error.
#include <doctest/doctest.h>

#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "fuzz_import.hpp"
#include "test_support.hpp"

TEST_CASE("fuzz: mutated models import or fail with bpuq::Error") {
    const std::string path = bpuq_test::data_dir() + "/mnist/mnist-8.onnx";
    if (!bpuq_test::path_exists(path)) {
        MESSAGE("skipped: " << path << " missing");
        return;
    }
    std::ifstream f(path, std::ios::binary);
    const std::vector<std::uint8_t> seed((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    REQUIRE(bpuq_test::fuzz_import_once(seed.data(), seed.size()));
    std::mt19937_64 rng(12345);
    const std::uint8_t interesting[] = {0x00, 0x01, 0x7f, 0x80, 0xff, 0x08, 0x10, 0x12, 0x1a, 0x22};
    int imported = 0, rejected = 0;
    for (int iter = 0; iter < 400; ++iter) {
        std::vector<std::uint8_t> m = seed;
        const int edits = 1 + int(rng() % 4);
        for (int e = 0; e < edits && !m.empty(); ++e) {
            const std::size_t at = rng() % m.size();
            switch (rng() % 5) {
                case 0: m[at] ^= std::uint8_t(1u << (rng() % 8)); break;
                case 1: m[at] = interesting[rng() % sizeof(interesting)]; break;
                case 2: m.resize(at); break;
                case 3: {
                    const std::size_t len = std::min<std::size_t>(m.size() - at, 1 + rng() % 64);
                    std::vector<std::uint8_t> chunk(m.begin() + std::ptrdiff_t(at), m.begin() + std::ptrdiff_t(at + len));
                    m.insert(m.begin() + std::ptrdiff_t(rng() % m.size()), chunk.begin(), chunk.end());
                    break;
                }
                default: m.erase(m.begin() + std::ptrdiff_t(at), m.begin() + std::ptrdiff_t(std::min(m.size(), at + 1 + rng() % 16)));
            }
        }
        bool ok = false;
        CHECK_NOTHROW(ok = bpuq_test::fuzz_import_once(m.data(), m.size()));
        (ok ? imported : rejected) += 1;
    }
    MESSAGE("mutated models: " << imported << " imported, " << rejected << " rejected with bpuq::Error");
    CHECK(rejected > 0);
}
