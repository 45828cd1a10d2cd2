// src/core/float_repr.cpp: Python's repr() of a float, for the protocol-0 FLOAT opcode.
//
// std::to_chars gives the shortest digits that round-trip; Python chooses between fixed and
// exponent notation by the position of the decimal point and spells exponents with a sign
// and at least two digits. Matching that keeps protocol 0 output byte-identical.
#include <charconv>
#include <cmath>
#include <cstring>

#include "picklex/writer.hpp"

namespace picklex {

std::size_t format_float_repr(double value, char* out) noexcept {
    char* p = out;
    if (std::isnan(value)) {
        std::memcpy(out, "nan", 3);
        return 3;
    }
    if (std::signbit(value)) *p++ = '-';
    if (std::isinf(value)) {
        std::memcpy(p, "inf", 3);
        return static_cast<std::size_t>(p - out) + 3;
    }
    const double magnitude = std::fabs(value);
    if (magnitude == 0.0) {
        std::memcpy(p, "0.0", 3);
        return static_cast<std::size_t>(p - out) + 3;
    }

    // Shortest round-trip digits in scientific form: d[.ddd]e±XX.
    char sci[32];
    char* sci_end = std::to_chars(sci, sci + sizeof sci, magnitude, std::chars_format::scientific).ptr;
    char digits[20];
    int ndigits = 0;
    const char* q = sci;
    for (; q < sci_end && *q != 'e'; ++q)
        if (*q != '.') digits[ndigits++] = *q;
    int exponent = 0;
    std::from_chars(q + 1 + (q[1] == '+'), sci_end, exponent);
    // Python: value = 0.d1d2... * 10**decpt; exponent form when decpt <= -4 or decpt > 16.
    const int decpt = exponent + 1;

    if (decpt <= -4 || decpt > 16) {
        *p++ = digits[0];
        if (ndigits > 1) {
            *p++ = '.';
            std::memcpy(p, digits + 1, static_cast<std::size_t>(ndigits - 1));
            p += ndigits - 1;
        }
        *p++ = 'e';
        *p++ = exponent < 0 ? '-' : '+';
        const int abs_exp = exponent < 0 ? -exponent : exponent;
        if (abs_exp < 10) *p++ = '0';
        p = std::to_chars(p, p + 4, abs_exp).ptr;
    } else if (decpt <= 0) {
        *p++ = '0';
        *p++ = '.';
        for (int i = 0; i < -decpt; ++i) *p++ = '0';
        std::memcpy(p, digits, static_cast<std::size_t>(ndigits));
        p += ndigits;
    } else if (ndigits <= decpt) {
        std::memcpy(p, digits, static_cast<std::size_t>(ndigits));
        p += ndigits;
        for (int i = ndigits; i < decpt; ++i) *p++ = '0';
        *p++ = '.';
        *p++ = '0';
    } else {
        std::memcpy(p, digits, static_cast<std::size_t>(decpt));
        p += decpt;
        *p++ = '.';
        std::memcpy(p, digits + decpt, static_cast<std::size_t>(ndigits - decpt));
        p += ndigits - decpt;
    }
    return static_cast<std::size_t>(p - out);
}

} // namespace picklex
