// fuzz/fuzz_float_repr.cpp: format_float_repr never writes past 32 bytes and round-trips.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "picklex/writer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < sizeof(double)) return 0;
    double value;
    std::memcpy(&value, data, sizeof value);
    char text[33];
    const std::size_t n = picklex::format_float_repr(value, text);
    if (n > 32) std::abort();
    text[n] = '\0';
    if (!std::isnan(value) && std::strtod(text, nullptr) != value) std::abort();
    return 0;
}
