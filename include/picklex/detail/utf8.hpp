// include/picklex/detail/utf8.hpp: UTF-8 from fixed-width code units (1, 2 or 4 bytes).
//
// Strings arrive as arrays of code units (CPython's compact representation, or a C++
// caller's u16/u32 text). Surrogate code points are encoded as three bytes, like Python's
// "surrogatepass" handler, which is how pickle carries lone surrogates.
#pragma once

#include <cstddef>
#include <cstdint>

namespace picklex::detail {

template <typename Unit> inline std::size_t utf8_length(const Unit* units, std::size_t length) noexcept {
    std::size_t n = length;
    for (std::size_t i = 0; i < length; ++i) {
        const std::uint32_t c = units[i];
        n += (c >= 0x80) + (c >= 0x800) + (c >= 0x10000);
    }
    return n;
}

template <typename Unit> inline char* encode_utf8(const Unit* units, std::size_t length, char* out) noexcept {
    auto* p = reinterpret_cast<unsigned char*>(out);
    for (std::size_t i = 0; i < length; ++i) {
        const std::uint32_t c = units[i];
        if (c < 0x80) {
            *p++ = static_cast<unsigned char>(c);
        } else if (c < 0x800) {
            *p++ = static_cast<unsigned char>(0xC0 | (c >> 6));
            *p++ = static_cast<unsigned char>(0x80 | (c & 0x3F));
        } else if (c < 0x10000) {
            *p++ = static_cast<unsigned char>(0xE0 | (c >> 12));
            *p++ = static_cast<unsigned char>(0x80 | ((c >> 6) & 0x3F));
            *p++ = static_cast<unsigned char>(0x80 | (c & 0x3F));
        } else {
            *p++ = static_cast<unsigned char>(0xF0 | (c >> 18));
            *p++ = static_cast<unsigned char>(0x80 | ((c >> 12) & 0x3F));
            *p++ = static_cast<unsigned char>(0x80 | ((c >> 6) & 0x3F));
            *p++ = static_cast<unsigned char>(0x80 | (c & 0x3F));
        }
    }
    return reinterpret_cast<char*>(p);
}

/// Dispatch on the code unit width: `kind` is 1, 2 or 4.
template <typename F> inline auto with_units(int kind, const void* units, F&& f) {
    if (kind == 1) return f(static_cast<const std::uint8_t*>(units));
    if (kind == 2) return f(static_cast<const std::uint16_t*>(units));
    return f(static_cast<const std::uint32_t*>(units));
}

} // namespace picklex::detail
