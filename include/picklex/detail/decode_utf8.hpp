// include/picklex/detail/decode_utf8.hpp: UTF-8 to fixed-width code units, in two passes.
//
// Pickled str payloads are UTF-8 with lone surrogates allowed (the encoder writes them with
// "surrogatepass"). A general decoder that starts narrow and widens when it meets a larger
// character copies the text again at every widening; decoding in two passes avoids that:
// scan_utf8() validates and reports the length and the code unit width the text needs, then
// decode_utf8() writes the code units once into storage of exactly that size.
//
// The width is exact, as CPython's compact strings require: a valid sequence's lead byte
// tells its range (C2-C3: U+0080-U+00FF, C4-DF: up to U+07FF, E0-EF: U+0800-U+FFFF, F0-F4:
// U+10000 and up), so the widest lead byte seen decides between 1, 2 and 4 bytes per unit.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace picklex::detail {

struct Utf8Scan {
    bool valid = false;      // well-formed UTF-8 (surrogates allowed); else nothing else is set
    std::size_t length = 0;  // code points
    std::uint32_t max_char = 0; // 0x7F (all ASCII), 0xFF, 0xFFFF or 0x10FFFF: the width needed
};

/// Length of the ASCII prefix of [p, p + n).
inline std::size_t ascii_prefix(const char* p, std::size_t n) noexcept {
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        std::uint64_t word;
        std::memcpy(&word, p + i, 8);
        if (word & 0x8080808080808080u) break;
    }
    while (i < n && static_cast<unsigned char>(p[i]) < 0x80) ++i;
    return i;
}

/// Validate [p, p + n) as UTF-8 with surrogates allowed, and measure it. The first
/// `ascii` bytes are known to be ASCII already.
inline Utf8Scan scan_utf8(const char* text, std::size_t n, std::size_t ascii = 0) noexcept {
    Utf8Scan scan;
    const auto* p = reinterpret_cast<const unsigned char*>(text);
    const unsigned char* const end = p + n;
    std::size_t i = ascii + ascii_prefix(text + ascii, n - ascii);
    std::size_t continuation = 0; // bytes that do not start a code point
    unsigned char widest = 0;     // largest lead byte seen
    while (i < n) {
        const unsigned char c = p[i];
        if (c < 0x80) {
            const std::size_t run = ascii_prefix(text + i, n - i);
            i += run;
            continue;
        }
        if (c < 0xC2) return scan; // stray continuation byte or overlong 2-byte form
        if (c > widest) widest = c;
        auto cont = [&](std::size_t k) { return (p[i + k] & 0xC0) == 0x80; };
        if (c < 0xE0) {
            if (end - (p + i) < 2 || !cont(1)) return scan;
            i += 2;
            continuation += 1;
        } else if (c < 0xF0) {
            if (end - (p + i) < 3 || !cont(1) || !cont(2)) return scan;
            if (c == 0xE0 && p[i + 1] < 0xA0) return scan; // overlong
            i += 3;
            continuation += 2;
        } else {
            if (c > 0xF4 || end - (p + i) < 4 || !cont(1) || !cont(2) || !cont(3)) return scan;
            if (c == 0xF0 && p[i + 1] < 0x90) return scan; // overlong
            if (c == 0xF4 && p[i + 1] > 0x8F) return scan; // beyond U+10FFFF
            i += 4;
            continuation += 3;
        }
    }
    scan.valid = true;
    scan.length = n - continuation;
    scan.max_char = widest == 0 ? 0x7F : widest < 0xC4 ? 0xFF : widest < 0xF0 ? 0xFFFF : 0x10FFFF;
    return scan;
}

/// Write the code units of [p, p + n), which scan_utf8() found valid and no wider than
/// `Unit`, to `out` (scan.length units).
template <typename Unit> inline void decode_utf8(const char* text, std::size_t n, Unit* out) noexcept {
    const auto* p = reinterpret_cast<const unsigned char*>(text);
    const unsigned char* const end = p + n;
    while (p < end) {
        const std::uint32_t c = *p;
        if (c < 0x80) {
            if constexpr (sizeof(Unit) == 1) {
                const std::size_t run = ascii_prefix(reinterpret_cast<const char*>(p),
                                                     static_cast<std::size_t>(end - p));
                std::memcpy(out, p, run);
                out += run;
                p += run;
            } else {
                *out++ = static_cast<Unit>(c);
                ++p;
            }
        } else if (c < 0xE0) {
            *out++ = static_cast<Unit>(((c & 0x1F) << 6) | (p[1] & 0x3F));
            p += 2;
        } else if (c < 0xF0) {
            *out++ = static_cast<Unit>(((c & 0x0F) << 12) | ((p[1] & 0x3Fu) << 6) | (p[2] & 0x3F));
            p += 3;
        } else {
            *out++ = static_cast<Unit>(((c & 0x07) << 18) | ((p[1] & 0x3Fu) << 12) |
                                       ((p[2] & 0x3Fu) << 6) | (p[3] & 0x3F));
            p += 4;
        }
    }
}

} // namespace picklex::detail
