// CompoNet's prompts: stem tags, the vocabulary, and the released text format "in: a, b; out: c".
#include <algorithm>
#include <cctype>
#include <set>

#include "cocola/componet.hpp"
#include "cocola/error.hpp"

namespace cocola::componet {

namespace {

std::string trim(const std::string& s) {
    size_t a = 0, b = s.size();
    while (a < b && std::isspace(static_cast<unsigned char>(s[a]))) ++a;
    while (b > a && std::isspace(static_cast<unsigned char>(s[b - 1]))) --b;
    return s.substr(a, b - a);
}

std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> out;
    size_t start = 0;
    for (size_t i = 0; i <= s.size(); ++i)
        if (i == s.size() || s[i] == sep) {
            out.push_back(s.substr(start, i - start));
            start = i + 1;
        }
    return out;
}

// "other_2" -> ("other", 2); "bass" -> ("bass", 0). The number is the digits after the last '_' or space.
Tag split_number(const std::string& text) {
    const size_t cut = text.find_last_of("_ ");
    if (cut != std::string::npos && cut + 1 < text.size() &&
        std::all_of(text.begin() + static_cast<long>(cut) + 1, text.end(), [](unsigned char c) { return std::isdigit(c); }) &&
        text.size() - cut - 1 <= 3)
        return {text.substr(0, cut), std::stoi(text.substr(cut + 1))};
    return {text, 0};
}

std::string known_list(const std::vector<std::string>& vocabulary) {
    std::string out;
    for (const auto& t : vocabulary) out += (out.empty() ? "" : ", ") + t;
    return out;
}

}  // namespace

std::string canonical_tag(const std::string& class_name) {
    std::string out;
    bool space = false;
    for (unsigned char c : class_name) {
        if (c == '_' || c == '-' || std::isspace(c)) {
            space = !out.empty();
            continue;
        }
        if (space) out += ' ';
        space = false;
        out += static_cast<char>(std::tolower(c));
    }
    return out;
}

const std::vector<std::string>& builtin_tags() {
    static const std::vector<std::string> tags = [] {
        const std::vector<std::string> raw = {
            // General MIDI families and drums: cocola synth, the openmsx songs, Slakh2100's inst_class
            "piano", "chromatic percussion", "organ", "guitar", "bass", "strings", "strings (continued)", "ensemble",
            "brass", "reed", "pipe", "synth lead", "synth pad", "synth effects", "ethnic", "percussive",
            "sound effects", "drums",
            // MUSDB18-HQ and MoisesDB
            "vocals", "other", "bowed strings", "other keys", "other plucked", "percussion", "wind",
            // CocoChorales
            "violin", "viola", "cello", "double bass", "flute", "oboe", "clarinet", "bassoon", "trumpet",
            "french horn", "tenor trombone", "tuba",
            // an input described by no stem list
            "mix"};
        std::vector<std::string> out;
        for (const auto& r : raw) out.push_back(canonical_tag(r));
        return out;
    }();
    return tags;
}

std::vector<Tag> tags_for_classes(const std::vector<std::string>& classes) {
    std::map<std::string, int> count, seen;
    for (const auto& c : classes) ++count[canonical_tag(c)];
    std::vector<Tag> out;
    for (const auto& c : classes) {
        const std::string name = canonical_tag(c);
        out.push_back({name, count[name] > 1 ? ++seen[name] : 0});
    }
    return out;
}

Prompt parse_prompt(const std::string& text, const std::vector<std::string>& vocabulary) {
    const std::set<std::string> known(vocabulary.begin(), vocabulary.end());
    Prompt p;
    bool has_out = false, has_in = false;
    for (const auto& raw_part : split(text, ';')) {
        const std::string part = trim(raw_part);
        if (part.empty()) continue;
        const size_t colon = part.find(':');
        const std::string key = colon == std::string::npos ? "" : canonical_tag(part.substr(0, colon));
        if (key != "in" && key != "out")
            throw Error("prompt \"" + text + "\": \"" + part + "\" is neither \"in: tags\" nor \"out: tags\"" +
                        (colon == std::string::npos ? " (a genre part is not supported)" : ""));
        bool& seen = key == "in" ? has_in : has_out;
        if (seen) throw Error("prompt \"" + text + "\": \"" + key + ":\" appears twice");
        seen = true;
        std::vector<Tag>& dest = key == "in" ? p.in : p.out;
        for (const auto& item : split(part.substr(colon + 1), ',')) {
            const std::string t = trim(item);
            if (t.empty()) continue;
            Tag tag = split_number(canonical_tag(t));
            if (!known.count(tag.name)) {
                // a class whose name ends in digits is taken whole before it is called unknown
                const std::string whole = canonical_tag(t);
                if (known.count(whole)) tag = {whole, 0};
                else
                    throw Error("prompt \"" + text + "\": unknown tag \"" + t + "\"; known tags: " + known_list(vocabulary));
            }
            dest.push_back(tag);
        }
    }
    if (p.out.empty()) throw Error("prompt \"" + text + "\": no output stems (write e.g. \"in: piano; out: bass, drums\")");
    return p;
}

std::string format_prompt(const Prompt& p) {
    auto list = [](const std::vector<Tag>& tags) {
        std::string out;
        for (const auto& t : tags) out += (out.empty() ? "" : ", ") + t.name + (t.number ? "_" + std::to_string(t.number) : "");
        return out;
    };
    if (p.empty()) return "";
    std::string out;
    if (!p.in.empty()) out = "in: " + list(p.in) + "; ";
    return out + "out: " + list(p.out);
}

}  // namespace cocola::componet
