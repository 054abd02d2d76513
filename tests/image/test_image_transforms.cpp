// Decoding + transforms reproduce the preprocessed reference inputs (made with PIL) exactly.
#include <doctest/doctest.h>

#include <bpuq/io/image.hpp>
#include <bpuq/io/npy.hpp>
#include <bpuq/io/transforms.hpp>

#include <cmath>
#include <fstream>
#include <functional>
#include <sstream>

#include "test_support.hpp"

using namespace bpuq;

namespace {

/// Source image paths listed in a reference README ("- imagenet/images/x.JPEG" lines).
std::vector<std::string> reference_sources(const std::string& model) {
    std::ifstream f(bpuq_test::data_dir() + "/reference/" + model + "/README.md");
    std::vector<std::string> out;
    std::string line;
    while (std::getline(f, line))
        if (line.rfind("- ", 0) == 0) out.push_back(bpuq_test::data_dir() + "/" + line.substr(2));
    return out;
}

/// Max |difference| between our preprocessing of each source image and the reference inputs.npy.
double max_reference_error(const std::string& model, const std::function<Tensor(const io::Image&)>& recipe) {
    const std::string dir = bpuq_test::data_dir() + "/reference/" + model;
    const Tensor ref = io::read_npy(dir + "/inputs.npy");
    const auto sources = reference_sources(model);
    REQUIRE(static_cast<std::int64_t>(sources.size()) == ref.dim(0));
    const std::int64_t per = ref.numel() / ref.dim(0);
    double worst = 0;
    for (std::size_t i = 0; i < sources.size(); ++i) {
        const Tensor t = recipe(io::read_image(sources[i]));
        REQUIRE(t.numel() == per);
        const float* a = t.data<float>();
        const float* b = ref.data<float>() + static_cast<std::int64_t>(i) * per;
        for (std::int64_t k = 0; k < per; ++k) worst = std::max(worst, static_cast<double>(std::fabs(a[k] - b[k])));
    }
    return worst;
}

bool have_data() {
    if (bpuq_test::path_exists(bpuq_test::data_dir() + "/reference")) return true;
    MESSAGE("skipped: no reference data under " << bpuq_test::data_dir() << " (set BPUQ_DATA_DIR)");
    return false;
}

}  // namespace

TEST_CASE("MobileNet recipe: centre crop 87.5%, PIL bilinear resize, (x - 128) / 128") {
    if (!have_data()) return;
    for (auto [model, size] : {std::pair<const char*, int>{"mobilenet_v2_1.0_224_fp32", 224}, {"mobilenet_v1_0.25_128_fp32", 128}}) {
        const int S = size;
        const double err = max_reference_error(model, [S](const io::Image& im) {
            return io::image_to_tensor(io::resize_bilinear_pil(io::center_crop_fraction(im, 0.875), S, S), true, {128.0f},
                                       {1.0f / 128.0f});
        });
        CHECK_MESSAGE(err == 0.0, model << ": max |error| " << err);
    }
}

TEST_CASE("SqueezeNet recipe: short side 256, centre crop 224, BGR, minus mean") {
    if (!have_data()) return;
    const double err = max_reference_error("squeezenet1.1_fp32", [](const io::Image& im) {
        return io::image_to_tensor(io::swap_rb(io::center_crop(io::resize_short_side_pil(im, 256), 224, 224)), true,
                                   {104.0f, 117.0f, 123.0f});
    });
    CHECK(err == 0.0);
}

TEST_CASE("ResNet-8 recipe: RGB 0..255 as float") {
    if (!have_data()) return;
    const double err = max_reference_error("resnet8_fp32", [](const io::Image& im) { return io::image_to_tensor(im, true); });
    CHECK(err == 0.0);
}

TEST_CASE("gray JPEGs become RGB by replication; bad files are errors naming the file") {
    if (!have_data()) return;
    const auto gray = io::read_image(bpuq_test::data_dir() + "/imagenet/images/n04254680_soccer_ball.JPEG", true);
    CHECK(gray.channels == 3);
    for (std::size_t i = 0; i < gray.pixels.size(); i += 3) {
        REQUIRE(gray.pixels[i] == gray.pixels[i + 1]);
        REQUIRE(gray.pixels[i] == gray.pixels[i + 2]);
    }
    const auto one = io::read_image(bpuq_test::data_dir() + "/imagenet/images/n04254680_soccer_ball.JPEG", false);
    CHECK(one.channels == 1);
    // a truncated JPEG and a non-image
    auto bytes = io::read_file_bytes(bpuq_test::data_dir() + "/cifar10/images/cat/0001.jpg");
    bytes.resize(bytes.size() / 3);
    CHECK_THROWS_WITH_AS(io::decode_jpeg(bytes, "cut.jpg"), doctest::Contains("cut.jpg"), bpuq::Error);
    CHECK_THROWS_WITH_AS(io::read_image(bpuq_test::data_dir() + "/README.md"), doctest::Contains("neither a JPEG nor a PNG"),
                         bpuq::Error);
    CHECK_THROWS_WITH_AS(io::read_image("/nonexistent.png"), doctest::Contains("cannot open '/nonexistent.png'"), bpuq::Error);
}

TEST_CASE("PIL bilinear resize on a synthetic image: identity, upscale, downscale invariants") {
    io::Image im = io::make_image(7, 5, 3);
    for (std::size_t i = 0; i < im.pixels.size(); ++i) im.pixels[i] = static_cast<std::uint8_t>((i * 37) % 256);
    const auto same = io::resize_bilinear_pil(im, 7, 5);
    CHECK(same.pixels == im.pixels);
    io::Image flat = io::make_image(9, 9, 1);
    std::fill(flat.pixels.begin(), flat.pixels.end(), 200);
    for (auto [w, h] : {std::pair<int, int>{3, 4}, {20, 13}, {9, 1}}) {
        const auto r = io::resize_bilinear_pil(flat, w, h);
        for (auto p : r.pixels) REQUIRE(p == 200);  // weights sum to one in fixed point
    }
    CHECK_THROWS_AS(io::crop(im, 5, 0, 3, 2), bpuq::Error);
    CHECK_THROWS_AS(io::resize_bilinear_pil(im, 0, 3), bpuq::Error);
}
