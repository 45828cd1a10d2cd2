// include/picklex/detail/decode_text.hpp: the text arguments of protocol-0 opcodes.
//
// GET and PUT carry their memo key as a decimal line that CPython parses with
// int(text, 10) semantics; the error messages quote the line as Python's repr() would.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace picklex::detail {

/// Python's str.isspace() for the ASCII range, which is what int() strips.
constexpr bool is_py_space(char c) noexcept {
    return c == ' ' || (c >= '\t' && c <= '\r');
}

enum class DecimalStatus : std::uint8_t { ok, invalid, overflow };

/// Parse `text` as int(text, 10) does: optional surrounding whitespace, an optional sign,
/// digits with single underscores between them. Like CPython, which hands the C string to
/// PyLong_FromString, the text ends at its first NUL byte. The value must fit in 64 bits.
inline DecimalStatus parse_python_decimal(std::string_view text, std::int64_t& value) noexcept {
    const char* p = text.data();
    const char* end = p + text.size();
    for (const char* q = p; q != end; ++q)
        if (*q == '\0') {
            end = q;
            break;
        }
    while (p != end && is_py_space(*p)) ++p;
    bool negative = false;
    if (p != end && (*p == '+' || *p == '-')) negative = *p++ == '-';
    if (p == end || *p < '0' || *p > '9') return DecimalStatus::invalid;
    // Accumulate the magnitude as unsigned; 2**63 is allowed only for negative numbers.
    std::uint64_t magnitude = 0;
    bool overflow = false;
    while (p != end) {
        char c = *p;
        if (c == '_') {
            if (p + 1 == end || p[1] < '0' || p[1] > '9') return DecimalStatus::invalid;
            c = *++p;
        } else if (c < '0' || c > '9') {
            break;
        }
        const auto digit = static_cast<std::uint64_t>(c - '0');
        if (magnitude > (UINT64_MAX - digit) / 10) overflow = true;
        else magnitude = magnitude * 10 + digit;
        ++p;
    }
    while (p != end && is_py_space(*p)) ++p;
    if (p != end) return DecimalStatus::invalid;
    constexpr std::uint64_t kLimit = std::uint64_t{1} << 63;
    if (overflow || magnitude > (negative ? kLimit : kLimit - 1)) return DecimalStatus::overflow;
    value = negative ? static_cast<std::int64_t>(0 - magnitude) : static_cast<std::int64_t>(magnitude);
    return DecimalStatus::ok;
}

/// Python's repr() of a str holding `text` (UTF-8), cut to `max_bytes` first as CPython's
/// "%.200R" error messages do. Control characters are escaped, other bytes kept.
inline std::string python_repr(std::string_view text, std::size_t max_bytes = 200) {
    if (text.size() > max_bytes) text = text.substr(0, max_bytes);
    const bool has_single = text.find('\'') != std::string_view::npos;
    const bool has_double = text.find('"') != std::string_view::npos;
    const char quote = has_single && !has_double ? '"' : '\'';
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    out.reserve(text.size() + 2);
    out += quote;
    for (const char c : text) {
        const auto u = static_cast<unsigned char>(c);
        if (c == quote || c == '\\') {
            out += '\\';
            out += c;
        } else if (c == '\n') {
            out += "\\n";
        } else if (c == '\r') {
            out += "\\r";
        } else if (c == '\t') {
            out += "\\t";
        } else if (u < 0x20 || u == 0x7f) {
            out += "\\x";
            out += kHex[u >> 4];
            out += kHex[u & 15];
        } else {
            out += c;
        }
    }
    out += quote;
    return out;
}

} // namespace picklex::detail
