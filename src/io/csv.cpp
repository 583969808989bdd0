// RFC 4180 CSV (csv.hpp): a small state machine, since a pairs file is tiny and no Debian CSV library is in use.
#include "cocola/csv.hpp"
#include <algorithm>

namespace cocola::csv {

Parsed parse(const std::string& text) {
    Parsed out;
    size_t i = text.compare(0, 3, "\xEF\xBB\xBF") == 0 ? 3 : 0;
    int line = 1;
    const size_t n = text.size();
    while (i < n) {
        Record rec;
        rec.line = line;
        std::string field;
        bool end_of_record = false;
        while (!end_of_record) {
            if (i < n && text[i] == '"') {
                const int quote_line = line;
                ++i;
                for (;;) {
                    if (i >= n) {
                        out.error = "line " + std::to_string(quote_line) + ": unterminated quoted field";
                        return out;
                    }
                    if (text[i] == '"') {
                        if (i + 1 < n && text[i + 1] == '"') {
                            field += '"';
                            i += 2;
                            continue;
                        }
                        ++i;
                        break;
                    }
                    if (text[i] == '\n') ++line;
                    field += text[i++];
                }
                // After a closing quote: a comma, or the end of the record (LF, CRLF, or a CR that ends the text).
                if (i < n && text[i] != ',' && text[i] != '\n' && !(text[i] == '\r' && (i + 1 == n || text[i + 1] == '\n'))) {
                    out.error = "line " + std::to_string(line) + ": text after a closing quote";
                    return out;
                }
            } else {
                while (i < n && text[i] != ',' && text[i] != '\n' && !(text[i] == '\r' && (i + 1 == n || text[i + 1] == '\n')))
                    field += text[i++];
            }
            rec.fields.push_back(std::move(field));
            field.clear();
            if (i < n && text[i] == ',') {
                ++i;
                continue;
            }
            if (i < n && text[i] == '\r') ++i;
            if (i < n && text[i] == '\n') ++i;
            ++line;
            end_of_record = true;
        }
        const bool blank = rec.fields.size() == 1 && rec.fields[0].empty();
        if (!blank) out.records.push_back(std::move(rec));
    }
    return out;
}

std::string trim(std::string field) {
    const char* ws = " \t";
    field.erase(0, std::min(field.find_first_not_of(ws), field.size()));
    field.erase(field.find_last_not_of(ws) + 1);
    return field;
}

}  // namespace cocola::csv
