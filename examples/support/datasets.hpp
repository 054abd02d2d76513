// Driver-side recipes for the shared evaluation data (../shared/data): which files form the
// calibration and evaluation splits, their labels, and the preprocessing that reproduces each
// model's float accuracy — in raw-pixel form (training colour order, 0..255, NCHW float32), the
// space bpuq_convert's calibration data and original_float_model inputs live in.
#pragma once

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <zlib.h>

#include <bpuq/io/image.hpp>
#include <bpuq/io/transforms.hpp>

namespace bpuq_driver {

struct Sample {
    std::string path;  ///< image file (or "mnist:<index>")
    int label = 0;
};

struct Recipe {
    std::string name;         ///< resnet8 | mobilenet_v1 | mobilenet_v2 | squeezenet | mnist
    std::string dataset;      ///< cifar10 | imagenet | mnist
    int label_offset = 0;     ///< model output index = label + offset (1 for the 1001-class MobileNets)
    std::string colour;       ///< rgb | bgr | gray
    std::vector<float> mean;  ///< what the config's norm_type inserts (documented with the recipe)
    std::vector<float> scale;
};

inline Recipe recipe_by_name(const std::string& name) {
    if (name == "resnet8") return {"resnet8", "cifar10", 0, "rgb", {}, {}};
    if (name == "mobilenet_v1" || name == "mobilenet_v2") return {name, "imagenet", 1, "rgb", {128.0f}, {1.0f / 128.0f}};
    if (name == "squeezenet") return {"squeezenet", "imagenet", 0, "bgr", {104.0f, 117.0f, 123.0f}, {}};
    if (name == "mnist") return {"mnist", "mnist", 0, "gray", {}, {}};
    BPUQ_THROW("driver.recipe", "unknown recipe '" + name + "'; known: resnet8, mobilenet_v1, mobilenet_v2, squeezenet, mnist");
}

inline std::vector<std::string> read_lines(const std::string& path) {
    std::ifstream f(path);
    BPUQ_CHECK(f.good(), "driver.list", "cannot open list '" + path + "'");
    std::vector<std::string> out;
    for (std::string l; std::getline(f, l);)
        if (!l.empty()) out.push_back(l);
    return out;
}

inline std::vector<std::uint8_t> gunzip_file(const std::string& path) {
    gzFile f = gzopen(path.c_str(), "rb");
    BPUQ_CHECK(f != nullptr, "driver.mnist", "cannot open '" + path + "'");
    std::vector<std::uint8_t> out;
    std::uint8_t buf[1 << 16];
    int n;
    while ((n = gzread(f, buf, sizeof buf)) > 0) out.insert(out.end(), buf, buf + n);
    gzclose(f);
    BPUQ_CHECK(n == 0, "driver.mnist", "'" + path + "' is not a valid gzip file");
    return out;
}

/// The samples of a split ("calibration" or "evaluation") of the recipe's dataset.
inline std::vector<Sample> list_split(const Recipe& r, const std::string& data_dir, const std::string& split) {
    BPUQ_CHECK(split == "calibration" || split == "evaluation", "driver.split", "split must be calibration or evaluation, not '" + split + "'");
    std::vector<Sample> out;
    if (r.dataset == "cifar10") {
        static const std::vector<std::string> classes{"airplane", "automobile", "bird", "cat", "deer",
                                                      "dog", "frog", "horse", "ship", "truck"};
        for (const auto& l : read_lines(data_dir + "/cifar10/" + split + ".txt")) {
            const std::string cls = l.substr(0, l.find('/'));
            const auto it = std::find(classes.begin(), classes.end(), cls);
            BPUQ_CHECK(it != classes.end(), "driver.label", "unknown CIFAR-10 class in '" + l + "'");
            out.push_back({data_dir + "/cifar10/images/" + l, int(it - classes.begin())});
        }
    } else if (r.dataset == "imagenet") {
        std::map<std::string, int> index;
        const auto rows = read_lines(data_dir + "/imagenet/class_index.tsv");
        for (std::size_t i = 1; i < rows.size(); ++i) {
            const auto t1 = rows[i].find('\t'), t2 = rows[i].find('\t', t1 + 1);
            index[rows[i].substr(t1 + 1, t2 - t1 - 1)] = std::stoi(rows[i].substr(0, t1));
        }
        for (const auto& l : read_lines(data_dir + "/imagenet/" + split + ".txt")) {
            const auto it = index.find(l.substr(0, l.find('_')));
            BPUQ_CHECK(it != index.end(), "driver.label", "unknown ImageNet wnid in '" + l + "'");
            out.push_back({data_dir + "/imagenet/images/" + l, it->second});
        }
    } else {  // mnist: calibration = images 0-99, evaluation = 100-9999 (data/README.md)
        const auto labels = gunzip_file(data_dir + "/mnist/t10k-labels-idx1-ubyte.gz");
        BPUQ_CHECK(labels.size() == 8 + 10000, "driver.mnist", "unexpected MNIST label file size");
        const int begin = split == "calibration" ? 0 : 100, end = split == "calibration" ? 100 : 10000;
        for (int i = begin; i < end; ++i) out.push_back({"mnist:" + std::to_string(i), labels[std::size_t(8 + i)]});
    }
    return out;
}

/// Loads samples of one recipe as raw-pixel float32 NCHW tensors [1, C, H, W].
class SampleLoader {
public:
    SampleLoader(Recipe r, std::string data_dir) : r_(std::move(r)), dir_(std::move(data_dir)) {
        if (r_.dataset == "mnist") mnist_ = gunzip_file(dir_ + "/mnist/t10k-images-idx3-ubyte.gz");
    }

    /// Pixels in the training colour order, layout HWC (for writing calibration files).
    bpuq::io::Image image(const Sample& s) const {
        using namespace bpuq::io;
        if (r_.dataset == "mnist") {
            const int i = std::stoi(s.path.substr(6));
            Image im = make_image(28, 28, 1);
            std::copy(mnist_.begin() + 16 + std::ptrdiff_t(i) * 784, mnist_.begin() + 16 + std::ptrdiff_t(i + 1) * 784, im.pixels.begin());
            return im;
        }
        const Image im = read_image(s.path);
        if (r_.name == "resnet8") return im;
        if (r_.name == "squeezenet") return swap_rb(center_crop(resize_short_side_pil(im, 256), 224, 224));
        const int size = r_.name == "mobilenet_v1" ? 128 : 224;
        return resize_bilinear_pil(center_crop_fraction(im, 0.875), size, size);
    }

    bpuq::Tensor tensor(const Sample& s) const { return bpuq::io::image_to_tensor(image(s), true); }

private:
    Recipe r_;
    std::string dir_;
    std::vector<std::uint8_t> mnist_;
};

}  // namespace bpuq_driver
