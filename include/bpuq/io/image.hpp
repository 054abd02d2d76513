// Image decoding (JPEG via libjpeg-turbo, PNG via libpng) into 8-bit interleaved RGB or gray pixels.
//
// libjpeg is used with its default decoder settings (integer slow DCT, fancy upsampling) — the
// settings PIL uses — so decoded pixels equal PIL's `Image.open(p).convert("RGB")` bit for bit.
// Needs the bpuq::image target (links JPEG::JPEG and PNG::PNG).
#pragma once

#include <csetjmp>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <jpeglib.h>
#include <png.h>

#include "../core/error.hpp"

BPUQ_NAMESPACE_BEGIN
namespace io {

/// 8-bit pixels, rows top to bottom, channels interleaved (HWC). channels is 1 (gray) or 3 (RGB).
struct Image {
    int width = 0;
    int height = 0;
    int channels = 0;
    std::vector<std::uint8_t> pixels;

    std::uint8_t* row(int y) { return pixels.data() + static_cast<std::size_t>(y) * width * channels; }
    const std::uint8_t* row(int y) const { return pixels.data() + static_cast<std::size_t>(y) * width * channels; }
    std::uint8_t at(int y, int x, int c) const { return row(y)[x * channels + c]; }
};

inline Image make_image(int width, int height, int channels) {
    BPUQ_CHECK(width > 0 && height > 0 && (channels == 1 || channels == 3), "image.size",
               "image size " + std::to_string(width) + "x" + std::to_string(height) + "x" + std::to_string(channels) +
                   " is invalid (positive width/height, 1 or 3 channels)");
    BPUQ_CHECK(static_cast<std::uint64_t>(width) * static_cast<std::uint64_t>(height) <= (std::uint64_t(1) << 30), "image.size",
               "image of " + std::to_string(width) + "x" + std::to_string(height) + " pixels is too large");
    Image im;
    im.width = width;
    im.height = height;
    im.channels = channels;
    im.pixels.assign(static_cast<std::size_t>(width) * height * channels, 0);
    return im;
}

namespace detail {

struct JpegErrorManager {
    jpeg_error_mgr base;
    std::jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
};

inline void jpeg_error_exit(j_common_ptr cinfo) {
    auto* err = reinterpret_cast<JpegErrorManager*>(cinfo->err);
    (*cinfo->err->format_message)(cinfo, err->message);
    std::longjmp(err->jump, 1);
}

inline void jpeg_silence(j_common_ptr, int) {}

}  // namespace detail

/// Decodes a JPEG held in memory; `name` is used in error messages. Gray JPEGs become RGB when
/// `to_rgb` (as PIL's convert("RGB") does: the gray value replicated).
inline Image decode_jpeg(const std::vector<std::uint8_t>& bytes, const std::string& name, bool to_rgb = true) {
    jpeg_decompress_struct cinfo;
    detail::JpegErrorManager err;
    cinfo.err = jpeg_std_error(&err.base);
    err.base.error_exit = detail::jpeg_error_exit;
    err.base.emit_message = detail::jpeg_silence;
    Image im;  // constructed before setjmp so no destructor is skipped by longjmp
    std::string failure;
    if (setjmp(err.jump)) {
        failure = err.message;
        jpeg_destroy_decompress(&cinfo);
        BPUQ_THROW("image.decode", "cannot decode JPEG '" + name + "': " + failure);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, bytes.data(), static_cast<unsigned long>(bytes.size()));
    jpeg_read_header(&cinfo, TRUE);
    const bool gray = cinfo.jpeg_color_space == JCS_GRAYSCALE;
    if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
        jpeg_destroy_decompress(&cinfo);
        BPUQ_THROW("image.decode", "JPEG '" + name + "' is CMYK/YCCK; convert it to RGB first (only RGB and gray JPEGs are read)");
    }
    cinfo.out_color_space = (gray && !to_rgb) ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_start_decompress(&cinfo);
    const int channels = static_cast<int>(cinfo.output_components);
    if (cinfo.output_width == 0 || cinfo.output_height == 0 || cinfo.output_width > 65535 || cinfo.output_height > 65535) {
        jpeg_destroy_decompress(&cinfo);
        BPUQ_THROW("image.decode", "JPEG '" + name + "' has an invalid size");
    }
    im.width = static_cast<int>(cinfo.output_width);
    im.height = static_cast<int>(cinfo.output_height);
    im.channels = channels;
    im.pixels.resize(static_cast<std::size_t>(im.width) * im.height * channels);
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW rowp = im.row(static_cast<int>(cinfo.output_scanline));
        jpeg_read_scanlines(&cinfo, &rowp, 1);
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    return im;
}

namespace detail {
struct PngReadState {
    const std::vector<std::uint8_t>* bytes;
    std::size_t offset;
};
inline void png_read_from_memory(png_structp png, png_bytep out, png_size_t n) {
    auto* st = static_cast<PngReadState*>(png_get_io_ptr(png));
    if (st->offset + n > st->bytes->size()) png_error(png, "truncated file");
    std::memcpy(out, st->bytes->data() + st->offset, n);
    st->offset += n;
}
inline void png_error_fn(png_structp png, png_const_charp msg) {
    auto* buf = static_cast<char*>(png_get_error_ptr(png));
    std::snprintf(buf, 256, "%s", msg);
    png_longjmp(png, 1);
}
inline void png_warning_fn(png_structp, png_const_charp) {}
}  // namespace detail

/// Decodes a PNG held in memory to 8-bit RGB (or gray when !to_rgb and the PNG is gray). Alpha is
/// dropped (composited on nothing: the colour values are kept, like PIL's convert("RGB")), 16-bit
/// samples are reduced to 8 bits, palettes expanded.
inline Image decode_png(const std::vector<std::uint8_t>& bytes, const std::string& name, bool to_rgb = true) {
    char message[256] = "unknown error";
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, message, detail::png_error_fn, detail::png_warning_fn);
    BPUQ_CHECK(png != nullptr, "image.decode", "cannot initialise libpng for '" + name + "'");
    png_infop info = png_create_info_struct(png);
    Image im;
    detail::PngReadState state{&bytes, 0};
    std::vector<png_bytep> rows;
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, nullptr);
        BPUQ_THROW("image.decode", "cannot decode PNG '" + name + "': " + std::string(message));
    }
    png_set_read_fn(png, &state, detail::png_read_from_memory);
    png_read_info(png, info);
    const png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    const int color = png_get_color_type(png, info);
    if (png_get_bit_depth(png, info) == 16) png_set_strip_16(png);
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color == PNG_COLOR_TYPE_GRAY && png_get_bit_depth(png, info) < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
    png_set_strip_alpha(png);
    const bool gray = (color & PNG_COLOR_MASK_COLOR) == 0;
    if (gray && to_rgb) png_set_gray_to_rgb(png);
    png_read_update_info(png, info);
    if (w == 0 || h == 0 || w > 65535 || h > 65535) png_error(png, "invalid size");
    im.width = static_cast<int>(w);
    im.height = static_cast<int>(h);
    im.channels = static_cast<int>(png_get_channels(png, info));
    im.pixels.resize(static_cast<std::size_t>(w) * h * static_cast<std::size_t>(im.channels));
    rows.resize(h);
    for (png_uint_32 y = 0; y < h; ++y) rows[y] = im.row(static_cast<int>(y));
    png_read_image(png, rows.data());
    png_read_end(png, nullptr);
    png_destroy_read_struct(&png, &info, nullptr);
    return im;
}

inline std::vector<std::uint8_t> read_file_bytes(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    BPUQ_CHECK(static_cast<bool>(f), "io.open", "cannot open '" + path + "'");
    return std::vector<std::uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

/// Reads a JPEG or PNG file (recognised by its first bytes, not its name) as RGB (or gray).
inline Image read_image(const std::string& path, bool to_rgb = true) {
    const std::vector<std::uint8_t> bytes = read_file_bytes(path);
    if (bytes.size() >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF) return decode_jpeg(bytes, path, to_rgb);
    static const std::uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
    if (bytes.size() >= 8 && std::memcmp(bytes.data(), png_sig, 8) == 0) return decode_png(bytes, path, to_rgb);
    BPUQ_THROW("image.format", "'" + path + "' is neither a JPEG nor a PNG file (by its first bytes)");
}

}  // namespace io
BPUQ_NAMESPACE_END
