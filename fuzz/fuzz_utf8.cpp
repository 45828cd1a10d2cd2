// fuzz/fuzz_utf8.cpp: scan_utf8/decode_utf8 (SSE2 and portable paths) agree with a plain
// reference decoder of UTF-8 with surrogates allowed, on arbitrary bytes and, since random
// bytes are rarely valid UTF-8, on text built from code points the input picks and then
// possibly damaged in one byte.
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "picklex/detail/decode_utf8.hpp"
#include "utf8_reference.hpp"

namespace {

void check_scan(const picklex::detail::Utf8Scan& scan, bool valid, const std::u32string& cps,
                std::uint32_t max_char) {
    if (scan.valid != valid) std::abort();
    if (valid && (scan.length != cps.size() || scan.max_char != max_char)) std::abort();
}

template <typename Unit, typename Decode>
void check_decode(const std::u32string& cps, Decode decode) {
    std::vector<Unit> out(cps.size() + 1, static_cast<Unit>(0x5A5A5A5A)); // exact size for ASan
    decode(out.data());
    if (out.back() != 0) std::abort();
    for (std::size_t k = 0; k < cps.size(); ++k)
        if (out[k] != cps[k]) std::abort();
}

void check(const std::string& text) {
    namespace d = picklex::detail;
    const std::vector<char> heap(text.begin(), text.end()); // exact size for ASan
    const char* p = heap.data();
    const auto* u = reinterpret_cast<const unsigned char*>(p);
    const std::size_t n = heap.size();
    const std::optional<std::u32string> decoded = picklex::testing::reference_decode(text);
    const bool valid = decoded.has_value();
    const std::u32string cps = valid ? *decoded : std::u32string();
    const std::uint32_t max_char = picklex::testing::reference_max_char(cps);
    const std::size_t ascii = d::ascii_prefix(p, n);

    for (const std::size_t skip : {std::size_t{0}, ascii}) {
        check_scan(d::scan_utf8(p, n, skip), valid, cps, max_char);
        check_scan(d::utf8::scan_portable(u, n, skip), valid, cps, max_char);
        if (!valid) continue;
        if (max_char <= 0xFF) {
            check_decode<unsigned char>(
                cps, [&](unsigned char* out) { d::decode_utf8(p, n, out, skip); });
            check_decode<unsigned char>(
                cps, [&](unsigned char* out) { d::utf8::decode_latin1_portable(u, n, out, skip); });
        }
        if (max_char <= 0xFFFF)
            check_decode<std::uint16_t>(
                cps, [&](std::uint16_t* out) { d::decode_utf8(p, n, out, skip); });
        check_decode<std::uint32_t>(cps,
                                    [&](std::uint32_t* out) { d::decode_utf8(p, n, out, skip); });
    }
    if (n > d::kSmallText) return;
    const d::SmallText small(p, n);
    check_scan(d::scan_small(small, n), valid, cps, max_char);
    if (!valid) return;
    const std::size_t length = cps.size();
    if (max_char <= 0xFF)
        check_decode<unsigned char>(
            cps, [&](unsigned char* out) { d::decode_small(small, n, length, out); });
    if (max_char <= 0xFFFF)
        check_decode<std::uint16_t>(
            cps, [&](std::uint16_t* out) { d::decode_small(small, n, length, out); });
    check_decode<std::uint32_t>(
        cps, [&](std::uint32_t* out) { d::decode_small(small, n, length, out); });
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const unsigned mode = data[0] & 3;
    if (mode < 2) {
        check(std::string(reinterpret_cast<const char*>(data + 1), size - 1));
        return 0;
    }
    // Two input bytes per code point: the first picks the range (ASCII weighs most, as in
    // real text), the pair picks the code point within it.
    static constexpr char32_t kRanges[8][2] = {
        {0x20, 0x7E},   {0x20, 0x7E},    {0x20, 0x7E},     {0x80, 0xFF},
        {0x100, 0x7FF}, {0x800, 0xFFFF}, {0xD800, 0xDFFF}, {0x10000, 0x10FFFF}};
    std::string text;
    std::size_t i = 1;
    for (; i + 2 <= size; i += 2) {
        const auto& range = kRanges[data[i] & 7];
        const std::uint32_t pick = std::uint32_t{data[i]} >> 3 | std::uint32_t{data[i + 1]} << 5;
        text += picklex::testing::encode_utf8(range[0] + pick * 2654435761u % (range[1] - range[0] + 1));
    }
    if (mode == 3 && !text.empty() && i < size)
        text[data[size - 1] % text.size()] = static_cast<char>(data[i]);
    check(text);
    return 0;
}
