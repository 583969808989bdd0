// Reading CSV as RFC 4180 says: fields in double quotes may hold commas, doubled quotes and line breaks.
#pragma once
#include <string>
#include <vector>

namespace cocola::csv {

struct Record {
    int line = 0;                     // the 1-based line the record starts on
    std::vector<std::string> fields;  // unquoted
};
struct Parsed {
    std::vector<Record> records;  // blank lines skipped
    std::string error;            // "line N: ..." for an unterminated quote or text after a closing quote; the
                                  // records before it are kept, the rest of the text is not read
};

// Parses `text` (a UTF-8 byte-order mark at its start is skipped; lines end in \n or \r\n).
Parsed parse(const std::string& text);

// A field without the spaces and tabs around it (hand-written files often have "a.wav, b.wav").
std::string trim(std::string field);

}  // namespace cocola::csv
