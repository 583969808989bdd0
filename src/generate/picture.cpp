// Spectrogram pictures: a minimal PNG writer (stored deflate blocks: no compression library needed, a picture
// of a few spectrograms is a few hundred kB) and an SVG that holds the PNG with a title over each panel.
#include <algorithm>
#include <array>
#include <cmath>
#include <string>

#include "cocola/error.hpp"
#include "cocola/fsutil.hpp"
#include "cocola/generate.hpp"
#include "cocola/train_core.hpp"

namespace cocola::generate {
namespace {

uint32_t crc32(const std::string& bytes) {
    static const auto table = [] {
        std::array<uint32_t, 256> t{};
        for (uint32_t n = 0; n < 256; ++n) {
            uint32_t c = n;
            for (int k = 0; k < 8; ++k) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            t[n] = c;
        }
        return t;
    }();
    uint32_t c = 0xFFFFFFFFu;
    for (unsigned char b : bytes) c = table[(c ^ b) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

void put32(std::string& s, uint32_t v) {
    for (int i = 3; i >= 0; --i) s += static_cast<char>((v >> (8 * i)) & 0xFF);
}

void chunk(std::string& png, const char* type, const std::string& data) {
    put32(png, static_cast<uint32_t>(data.size()));
    const std::string body = std::string(type) + data;
    png += body;
    put32(png, crc32(body));
}

// RGB rows -> PNG bytes (colour type 2, 8 bits, no filter, zlib with stored blocks).
std::string encode_png(int width, int height, const std::vector<uint8_t>& rgb) {
    std::string raw;
    for (int y = 0; y < height; ++y) {
        raw += '\0';  // filter: none
        raw.append(reinterpret_cast<const char*>(rgb.data()) + static_cast<size_t>(y) * width * 3, static_cast<size_t>(width) * 3);
    }
    std::string z = "\x78\x01";
    for (size_t pos = 0; pos < raw.size() || pos == 0;) {
        const size_t n = std::min<size_t>(65535, raw.size() - pos);
        const bool last = pos + n >= raw.size();
        z += static_cast<char>(last ? 1 : 0);
        z += static_cast<char>(n & 0xFF);
        z += static_cast<char>(n >> 8);
        z += static_cast<char>(~n & 0xFF);
        z += static_cast<char>((~n >> 8) & 0xFF);
        z.append(raw, pos, n);
        pos += n;
        if (last) break;
    }
    uint32_t a = 1, b = 0;
    for (unsigned char c : raw) {
        a = (a + c) % 65521;
        b = (b + a) % 65521;
    }
    put32(z, (b << 16) | a);
    std::string png = "\x89PNG\r\n\x1a\n";
    std::string ihdr;
    put32(ihdr, static_cast<uint32_t>(width));
    put32(ihdr, static_cast<uint32_t>(height));
    ihdr += std::string("\x08\x02\x00\x00\x00", 5);
    chunk(png, "IHDR", ihdr);
    chunk(png, "IDAT", z);
    chunk(png, "IEND", "");
    return png;
}

// A perceptual dark-blue -> purple -> orange -> yellow map (close to matplotlib's magma), v in [0, 1].
std::array<uint8_t, 3> colour(double v) {
    static const double stops[][3] = {{0, 0, 4}, {80, 18, 123}, {182, 54, 121}, {251, 136, 97}, {252, 253, 191}};
    v = std::clamp(v, 0.0, 1.0) * 4;
    const int i = std::min(3, static_cast<int>(v));
    const double f = v - i;
    std::array<uint8_t, 3> c{};
    for (int k = 0; k < 3; ++k) c[k] = static_cast<uint8_t>(std::lround(stops[i][k] * (1 - f) + stops[i + 1][k] * f));
    return c;
}

constexpr int kRowsPerBand = 2;  // each mel band two pixels high

std::string spectrogram_png(const std::vector<at::Tensor>& mels, int& width, int& height) {
    if (mels.empty()) throw Error("spectrogram picture: no spectrograms");
    width = 0;
    double top = -1e300;
    for (const auto& m : mels) {
        if (m.dim() != 2 || m.size(0) != kMelBands) throw Error("spectrogram picture: expected [64, T] spectrograms");
        width = std::max(width, static_cast<int>(m.size(1)));
        top = std::max(top, m.max().item<double>());
    }
    const double bottom = std::max(kMelFloorDb, top - 80);  // an 80 dB range, as spectrogram plots usually show
    const int panel = kMelBands * kRowsPerBand, gap = 6;
    height = static_cast<int>(mels.size()) * (panel + gap) - gap;
    std::vector<uint8_t> rgb(static_cast<size_t>(width) * height * 3, 255);
    for (size_t p = 0; p < mels.size(); ++p) {
        const at::Tensor m = mels[p].to(at::kDouble).contiguous();
        const double* d = m.data_ptr<double>();
        const int T = static_cast<int>(m.size(1));
        for (int band = 0; band < kMelBands; ++band)
            for (int t = 0; t < T; ++t) {
                const auto c = colour((d[band * T + t] - bottom) / (top - bottom));
                for (int r = 0; r < kRowsPerBand; ++r) {
                    // Low bands at the bottom of each panel.
                    const int y = static_cast<int>(p) * (panel + gap) + (kMelBands - 1 - band) * kRowsPerBand + r;
                    std::copy(c.begin(), c.end(), rgb.begin() + (static_cast<size_t>(y) * width + t) * 3);
                }
            }
    }
    return encode_png(width, height, rgb);
}

std::string base64(const std::string& in) {
    static const char* tbl = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    size_t i = 0;
    for (; i + 2 < in.size(); i += 3) {
        const uint32_t v = (static_cast<uint8_t>(in[i]) << 16) | (static_cast<uint8_t>(in[i + 1]) << 8) | static_cast<uint8_t>(in[i + 2]);
        for (int k = 3; k >= 0; --k) out += tbl[(v >> (6 * k)) & 63];
    }
    if (i < in.size()) {
        uint32_t v = static_cast<uint8_t>(in[i]) << 16;
        if (i + 1 < in.size()) v |= static_cast<uint8_t>(in[i + 1]) << 8;
        out += tbl[(v >> 18) & 63];
        out += tbl[(v >> 12) & 63];
        out += i + 1 < in.size() ? tbl[(v >> 6) & 63] : '=';
        out += '=';
    }
    return out;
}

}  // namespace

void write_spectrogram_png(const std::string& path, const std::vector<at::Tensor>& mels) {
    int w = 0, h = 0;
    fsutil::write_file_atomically(path, spectrogram_png(mels, w, h));
}

void write_spectrogram_svg(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& panels) {
    std::vector<at::Tensor> mels;
    for (const auto& p : panels) mels.push_back(p.second);
    int w = 0, h = 0;
    const std::string png = spectrogram_png(mels, w, h);
    // Titles go in a strip above each panel: the PNG is drawn in slices, one per panel.
    const int panel = kMelBands * kRowsPerBand, gap = 6, title = 18;
    const int total = static_cast<int>(panels.size()) * (panel + title);
    std::string svg = "<svg xmlns='http://www.w3.org/2000/svg' xmlns:xlink='http://www.w3.org/1999/xlink' width='" +
                      std::to_string(w) + "' height='" + std::to_string(total) + "' font-family='sans-serif'>\n" +
                      "<rect width='100%' height='100%' fill='white'/>\n<defs><image id='s' width='" + std::to_string(w) +
                      "' height='" + std::to_string(h) + "' xlink:href='data:image/png;base64," + base64(png) + "'/></defs>\n";
    for (size_t i = 0; i < panels.size(); ++i) {
        const int y = static_cast<int>(i) * (panel + title);
        svg += "<text x='4' y='" + std::to_string(y + 13) + "' font-size='12'>" + train::svg_escape(panels[i].first) + "</text>\n";
        svg += "<svg x='0' y='" + std::to_string(y + title) + "' width='" + std::to_string(w) + "' height='" +
               std::to_string(panel) + "' viewBox='0 " + std::to_string(static_cast<int>(i) * (panel + gap)) + " " +
               std::to_string(w) + " " + std::to_string(panel) + "'><use xlink:href='#s'/></svg>\n";
    }
    svg += "</svg>\n";
    fsutil::write_file_atomically(path, svg);
}

}  // namespace cocola::generate
