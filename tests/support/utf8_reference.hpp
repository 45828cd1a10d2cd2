// tests/support/utf8_reference.hpp: a plain UTF-8 decoder and encoder to check the fast
// decoder against (GoogleTest suite and libFuzzer harness alike). Written for clarity, not
// speed: one code point at a time, every rule spelled out.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace picklex::testing {

/// What bytes.decode("utf-8", "surrogatepass") gives, or nothing when it raises: each
/// sequence decoded by its lead byte, then rejected if it is shorter than the input,
/// overlong (below the smallest code point of its length) or beyond U+10FFFF.
inline std::optional<std::u32string> reference_decode(std::string_view s) {
    std::u32string out;
    for (std::size_t i = 0; i < s.size();) {
        const auto b = static_cast<unsigned char>(s[i]);
        std::size_t more;
        char32_t cp, smallest;
        if (b < 0x80) {
            more = 0, cp = b, smallest = 0;
        } else if (b >= 0xC0 && b < 0xE0) {
            more = 1, cp = b & 0x1F, smallest = 0x80;
        } else if (b >= 0xE0 && b < 0xF0) {
            more = 2, cp = b & 0x0F, smallest = 0x800;
        } else if (b >= 0xF0 && b < 0xF8) {
            more = 3, cp = b & 0x07, smallest = 0x10000;
        } else {
            return std::nullopt;
        }
        if (s.size() - i - 1 < more) return std::nullopt;
        for (std::size_t k = 1; k <= more; ++k) {
            const auto c = static_cast<unsigned char>(s[i + k]);
            if ((c & 0xC0) != 0x80) return std::nullopt;
            cp = cp << 6 | (c & 0x3F);
        }
        if (cp < smallest || cp > 0x10FFFF) return std::nullopt;
        out.push_back(cp);
        i += 1 + more;
    }
    return out;
}

/// The max_char a scan must report for these code points: the top of the narrowest of
/// CPython's string kinds (1, 2 or 4 bytes per character) that holds them all.
inline std::uint32_t reference_max_char(const std::u32string& cps) {
    char32_t top = 0;
    for (char32_t c : cps)
        top = c > top ? c : top;
    return top < 0x80 ? 0x7F : top < 0x100 ? 0xFF : top < 0x10000 ? 0xFFFF : 0x10FFFF;
}

/// UTF-8 of one code point, surrogates included (as "surrogatepass" writes them).
inline std::string encode_utf8(char32_t cp) {
    std::string out;
    if (cp < 0x80) return std::string(1, static_cast<char>(cp));
    if (cp < 0x800) {
        out += static_cast<char>(0xC0 | cp >> 6);
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xE0 | cp >> 12);
        out += static_cast<char>(0x80 | (cp >> 6 & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | cp >> 18);
        out += static_cast<char>(0x80 | (cp >> 12 & 0x3F));
        out += static_cast<char>(0x80 | (cp >> 6 & 0x3F));
    }
    out += static_cast<char>(0x80 | (cp & 0x3F));
    return out;
}

/// UTF-8 of a sequence of code points.
inline std::string encode_utf8(const std::u32string& cps) {
    std::string out;
    for (char32_t cp : cps)
        out += encode_utf8(cp);
    return out;
}

} // namespace picklex::testing
