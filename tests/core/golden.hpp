// tests/core/golden.hpp: reading the golden files in tests/core/data/.
//
// The goldens are written by scripts/gen_core_goldens.py from the interpreter's own pickle
// and pickletools; the tests here only parse them. Lines are tab-separated, '#' starts a
// comment line, and "-" stands for an empty field.
#pragma once

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#ifndef PICKLEX_TEST_DATA_DIR
#error "PICKLEX_TEST_DATA_DIR must name tests/core/data (set by CMakeLists.txt)"
#endif

namespace picklex::test {

using Fields = std::vector<std::string>;

inline std::string data_path(std::string_view name) {
    return std::string(PICKLEX_TEST_DATA_DIR) + "/" + std::string(name);
}

/// The non-comment lines of a golden file, split on tabs. Throws if the file is missing,
/// so a test never passes vacuously on an empty list.
inline std::vector<Fields> read_golden(std::string_view name) {
    std::ifstream in(data_path(name));
    if (!in) throw std::runtime_error("cannot open golden file " + data_path(name));
    std::vector<Fields> rows;
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty() || line[0] == '#') continue;
        Fields fields;
        std::size_t start = 0;
        for (;;) {
            const std::size_t tab = line.find('\t', start);
            fields.push_back(line.substr(start, tab == std::string::npos ? tab : tab - start));
            if (tab == std::string::npos) break;
            start = tab + 1;
        }
        for (std::string& f : fields)
            if (f == "-") f.clear();
        rows.push_back(std::move(fields));
    }
    if (rows.empty()) throw std::runtime_error("golden file " + data_path(name) + " is empty");
    return rows;
}

inline std::string from_hex(std::string_view hex) {
    if (hex.size() % 2) throw std::runtime_error("odd-length hex string");
    auto nibble = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        throw std::runtime_error("bad hex digit");
    };
    std::string out;
    out.reserve(hex.size() / 2);
    for (std::size_t i = 0; i < hex.size(); i += 2)
        out.push_back(static_cast<char>(nibble(hex[i]) << 4 | nibble(hex[i + 1])));
    return out;
}

inline std::string to_hex(std::string_view bytes) {
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string out;
    out.reserve(bytes.size() * 2);
    for (unsigned char c : bytes) {
        out.push_back(kDigits[c >> 4]);
        out.push_back(kDigits[c & 15]);
    }
    return out;
}

/// zlib's CRC-32, to compare large outputs with the goldens' checksums.
inline std::uint32_t crc32(std::string_view data) {
    static const auto table = [] {
        std::vector<std::uint32_t> t(256);
        for (std::uint32_t i = 0; i < 256; ++i) {
            std::uint32_t c = i;
            for (int k = 0; k < 8; ++k) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            t[i] = c;
        }
        return t;
    }();
    std::uint32_t crc = 0xFFFFFFFFu;
    for (unsigned char c : data) crc = table[(crc ^ c) & 0xff] ^ (crc >> 8);
    return crc ^ 0xFFFFFFFFu;
}

/// Decode UTF-8 that may carry surrogates (Python's "surrogatepass") into code points.
inline std::u32string decode_utf8(std::string_view s) {
    std::u32string out;
    for (std::size_t i = 0; i < s.size();) {
        const auto b = static_cast<unsigned char>(s[i]);
        const int extra = b < 0x80 ? 0 : b < 0xE0 ? 1 : b < 0xF0 ? 2 : 3;
        char32_t cp = extra == 0 ? b : b & (0x3F >> extra);
        for (int k = 1; k <= extra; ++k) cp = cp << 6 | (static_cast<unsigned char>(s[i + k]) & 0x3F);
        out.push_back(cp);
        i += 1 + static_cast<std::size_t>(extra);
    }
    return out;
}

/// Encode code points as UTF-8, surrogates included.
inline std::string encode_utf8(std::u32string_view text) {
    std::string out;
    for (char32_t cp : text) {
        if (cp < 0x80) {
            out.push_back(static_cast<char>(cp));
        } else if (cp < 0x800) {
            out.push_back(static_cast<char>(0xC0 | cp >> 6));
            out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
        } else if (cp < 0x10000) {
            out.push_back(static_cast<char>(0xE0 | cp >> 12));
            out.push_back(static_cast<char>(0x80 | (cp >> 6 & 0x3F)));
            out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
        } else {
            out.push_back(static_cast<char>(0xF0 | cp >> 18));
            out.push_back(static_cast<char>(0x80 | (cp >> 12 & 0x3F)));
            out.push_back(static_cast<char>(0x80 | (cp >> 6 & 0x3F)));
            out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
        }
    }
    return out;
}

/// Code points narrowed to the unit width CPython would store them in (1, 2 or 4 bytes),
/// as Writer::save_unicode_text expects.
struct Units {
    int kind = 1;
    std::vector<std::uint8_t> u8;
    std::vector<std::uint16_t> u16;
    std::vector<std::uint32_t> u32;
    const void* data() const {
        return kind == 1 ? static_cast<const void*>(u8.data())
                         : kind == 2 ? static_cast<const void*>(u16.data()) : u32.data();
    }
};

inline Units to_units(std::u32string_view text, int min_kind = 1) {
    char32_t max = 0;
    for (char32_t cp : text) max = cp > max ? cp : max;
    Units u;
    u.kind = max >= 0x10000 ? 4 : max >= 0x100 ? 2 : 1;
    if (u.kind < min_kind) u.kind = min_kind;
    for (char32_t cp : text) {
        if (u.kind == 1) u.u8.push_back(static_cast<std::uint8_t>(cp));
        else if (u.kind == 2) u.u16.push_back(static_cast<std::uint16_t>(cp));
        else u.u32.push_back(static_cast<std::uint32_t>(cp));
    }
    return u;
}

} // namespace picklex::test
