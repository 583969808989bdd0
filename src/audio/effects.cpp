// Audio effects through libsox (SoX's effects library: equalizer, compand, overdrive, chorus, reverb, ...), on
// in-memory mono buffers: an input effect feeds the samples, an output effect collects them.
#include <sox.h>

#include <algorithm>
#include <cstdarg>
#include <cmath>
#include <cstring>
#include <mutex>

#include "cocola/audio.hpp"
#include "cocola/error.hpp"

namespace cocola::audio {
namespace {

// The chain runs this far below the input level: SoX's samples are 32-bit integers that clip at full scale.
constexpr double kHeadroom = 0.125;  // -18 dB
constexpr double kFullScale = 2147483648.0;

struct Buffers {
    const std::vector<float>* in = nullptr;
    size_t pos = 0;
    std::vector<float>* out = nullptr;
};

Buffers* buffers_of(sox_effect_t* e) { return *static_cast<Buffers**>(e->priv); }

int input_drain(sox_effect_t* e, sox_sample_t* obuf, size_t* osamp) {
    Buffers* b = buffers_of(e);
    const size_t n = std::min(*osamp, b->in->size() - b->pos);
    for (size_t i = 0; i < n; ++i) {
        const double v = std::clamp(static_cast<double>((*b->in)[b->pos + i]) * kHeadroom, -1.0, 1.0 - 1.0 / kFullScale);
        obuf[i] = static_cast<sox_sample_t>(std::lround(v * kFullScale));
    }
    b->pos += n;
    *osamp = n;
    return n ? SOX_SUCCESS : SOX_EOF;
}

int output_flow(sox_effect_t* e, const sox_sample_t* ibuf, sox_sample_t*, size_t* isamp, size_t* osamp) {
    Buffers* b = buffers_of(e);
    for (size_t i = 0; i < *isamp; ++i) b->out->push_back(static_cast<float>(ibuf[i] / kFullScale / kHeadroom));
    *osamp = 0;
    return SOX_SUCCESS;
}

const sox_effect_handler_t* input_handler() {
    static const sox_effect_handler_t h = {"cocola_input", nullptr, SOX_EFF_MCHAN, nullptr, nullptr, nullptr,
                                           input_drain,    nullptr, nullptr,       sizeof(Buffers*)};
    return &h;
}
const sox_effect_handler_t* output_handler() {
    static const sox_effect_handler_t h = {"cocola_output", nullptr, SOX_EFF_MCHAN, nullptr, nullptr, output_flow,
                                           nullptr,         nullptr, nullptr,       sizeof(Buffers*)};
    return &h;
}

// libsox keeps global state (its init, message handler): one chain at a time in this process.
std::mutex& sox_mutex() {
    static std::mutex m;
    return m;
}

void quiet_sox(unsigned, const char*, const char*, va_list) {}

// An effect made by sox_create_effect that never joined a chain: its kill handler and private data are ours to
// release (sox_delete_effect only frees per-flow data, and such an effect has no flows yet).
void discard_effect(sox_effect_t* e) {
    if (e->handler.kill) e->handler.kill(e);
    std::free(e->priv);
    std::free(e);
}

}  // namespace

std::string effect_chain_text(const EffectChain& chain) {
    std::string s;
    for (size_t i = 0; i < chain.size(); ++i) {
        if (i) s += " : ";
        for (size_t j = 0; j < chain[i].size(); ++j) s += (j ? " " : "") + chain[i][j];
    }
    return s;
}

std::vector<float> apply_effects(const std::vector<float>& x, int rate, const EffectChain& chain) {
    if (chain.empty() || x.empty()) return x;
    std::lock_guard<std::mutex> lock(sox_mutex());
    static const bool ready = [] {
        sox_globals.output_message_handler = quiet_sox;
        sox_globals.verbosity = 0;
        return sox_init() == SOX_SUCCESS;
    }();
    if (!ready) throw Error("libsox could not be initialised");

    std::vector<float> out;
    out.reserve(x.size() + static_cast<size_t>(rate));
    Buffers buffers{&x, 0, &out};
    sox_signalinfo_t signal = {static_cast<sox_rate_t>(rate), 1, 32, 0, nullptr};
    sox_encodinginfo_t encoding;
    std::memset(&encoding, 0, sizeof(encoding));
    encoding.encoding = SOX_ENCODING_SIGN2;
    encoding.bits_per_sample = 32;
    sox_effects_chain_t* c = sox_create_effects_chain(&encoding, &encoding);
    if (!c) throw Error("libsox: cannot create an effects chain");
    struct ChainGuard {
        sox_effects_chain_t* c;
        ~ChainGuard() { sox_delete_effects_chain(c); }
    } guard{c};

    // `signal` follows the chain (each effect's output); `target` is what the chain must end as.
    const sox_signalinfo_t target = signal;
    auto add = [&](sox_effect_t* e, const std::string& what) {
        sox_signalinfo_t wanted = target;
        const int rc = sox_add_effect(c, e, &signal, &wanted);
        std::free(e);
        if (rc != SOX_SUCCESS) throw Error("audio effect \"" + what + "\": SoX cannot run it on " + std::to_string(rate) + " Hz mono");
    };
    sox_effect_t* e = sox_create_effect(input_handler());
    *static_cast<Buffers**>(e->priv) = &buffers;
    add(e, "input");
    for (const auto& words : chain) {
        if (words.empty()) throw Error("audio effects: an empty effect in the chain");
        const std::string text = effect_chain_text({words});
        const sox_effect_handler_t* h = sox_find_effect(words[0].c_str());
        if (!h) throw Error("audio effect \"" + text + "\": SoX has no effect " + words[0]);
        e = sox_create_effect(h);
        std::vector<std::string> args(words.begin() + 1, words.end());
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        if (sox_effect_options(e, static_cast<int>(argv.size()), argv.data()) != SOX_SUCCESS) {
            discard_effect(e);
            throw Error("audio effect \"" + text + "\": SoX refuses these options");
        }
        add(e, text);
        if (signal.rate != rate || signal.channels != 1)
            throw Error("audio effect \"" + text + "\": it changes the rate or the channels");
    }
    e = sox_create_effect(output_handler());
    *static_cast<Buffers**>(e->priv) = &buffers;
    add(e, "output");
    if (sox_flow_effects(c, nullptr, nullptr) != SOX_SUCCESS) throw Error("audio effects \"" + effect_chain_text(chain) + "\": SoX failed while processing");
    out.resize(x.size(), 0.0f);  // the tail goes; a chain that shortened the audio is padded with silence
    return out;
}

}  // namespace cocola::audio
