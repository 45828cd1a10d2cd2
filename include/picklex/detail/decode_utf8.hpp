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
//
// Real text mixes ASCII with other characters at random, so a loop that branches on the kind
// of each byte or code point mispredicts all the time. Both passes therefore work on blocks
// without data-dependent branches inside a block: the scan checks 16 bytes at once (SSE2) for
// the structural rules; the decoder turns every byte into the unit it would start and packs
// the units together in registers (1-byte units), or computes every code point with the same
// arithmetic whatever its length, stepping over continuation bytes by a bit mask (2 and 4
// bytes). Strings of up to 64 bytes are copied once into a zero-padded buffer so that neither
// pass handles a partial block. The portable paths (no SSE2) follow the same plan a byte at a
// time; they are compiled everywhere, so the tests hold both against the same reference.
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace picklex::detail {

struct Utf8Scan {
    bool valid = false;         // well-formed UTF-8 (surrogates allowed); else nothing else is set
    std::size_t length = 0;     // code points
    std::uint32_t max_char = 0; // 0x7F (all ASCII), 0xFF, 0xFFFF or 0x10FFFF: the width needed
};

/// Length of the ASCII prefix of [p, p + n).
inline std::size_t ascii_prefix(const char* p, std::size_t n) noexcept {
    constexpr std::uint64_t kHigh = 0x8080808080808080u;
    // The first byte with its high bit set in a word, without a byte loop.
    auto first_high = [](std::uint64_t bits) {
        const int zeros = std::endian::native == std::endian::little ? std::countr_zero(bits)
                                                                     : std::countl_zero(bits);
        return static_cast<std::size_t>(zeros) / 8;
    };
    if (n < 8) {
        std::size_t i = 0;
        while (i < n && static_cast<unsigned char>(p[i]) < 0x80)
            ++i;
        return i;
    }
    std::uint64_t word;
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        std::memcpy(&word, p + i, 8);
        if (word & kHigh) return i + first_high(word & kHigh);
    }
    if (i == n) return n;
    // The last 8 bytes overlap bytes already known to be ASCII.
    std::memcpy(&word, p + n - 8, 8);
    return word & kHigh ? n - 8 + first_high(word & kHigh) : n;
}

namespace utf8 {

inline std::uint32_t max_char_for(unsigned widest) noexcept {
    return widest < 0x80 ? 0x7F : widest < 0xC4 ? 0xFF : widest < 0xF0 ? 0xFFFF : 0x10FFFF;
}

// ---- scan ----

/// What a byte means as the previous byte of a sequence: how many continuation bytes it
/// opens, the range the next byte must fall in (E0, F0 and F4 narrow it to exclude overlong
/// forms and code points past U+10FFFF), and whether it may appear at all.
struct ByteRule {
    std::uint8_t opens = 0;
    std::uint8_t next_lo = 0x00;
    std::uint8_t next_hi = 0xFF;
    std::uint8_t bad = 0;
};

consteval std::array<ByteRule, 256> make_byte_rules() {
    std::array<ByteRule, 256> rules{};
    for (unsigned c = 0xC0; c < 0x100; ++c) {
        ByteRule& r = rules[c];
        r.opens = c < 0xE0 ? 1 : c < 0xF0 ? 2 : 3;
        r.next_lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80;
        r.next_hi = c == 0xF4 ? 0x8F : 0xBF;
        r.bad = c < 0xC2 || c > 0xF4;
    }
    return rules;
}
inline constexpr std::array<ByteRule, 256> kByteRules = make_byte_rules();

/// Portable scan of [p + i, p + n); [p, p + i) is ASCII.
inline Utf8Scan scan_portable(const unsigned char* p, std::size_t n, std::size_t i) noexcept {
    unsigned need = 0;  // continuation bytes still expected
    unsigned error = 0; // any rule broken
    unsigned prev = 0;  // previous byte (ASCII before the start)
    unsigned widest = 0;
    std::size_t continuation = 0;
    while (i < n) {
        if (need == 0 && i + 8 <= n) {
            std::uint64_t word;
            std::memcpy(&word, p + i, 8);
            if (!(word & 0x8080808080808080u)) {
                i += 8;
                prev = 0;
                continue;
            }
        }
        const unsigned c = p[i++];
        const ByteRule& after = kByteRules[prev];
        const unsigned is_cont = (c & 0xC0) == 0x80;
        error |=
            (is_cont ^ (need != 0)) | (c < after.next_lo) | (c > after.next_hi) | kByteRules[c].bad;
        need = is_cont ? need - 1 : kByteRules[c].opens;
        continuation += is_cont;
        widest = c > widest ? c : widest;
        prev = c;
    }
    Utf8Scan scan;
    if (error | need) return scan;
    scan.valid = true;
    scan.length = n - continuation;
    scan.max_char = max_char_for(widest);
    return scan;
}

#if defined(__SSE2__)
/// SSE2 scan. Per 16 bytes: a byte must be a continuation exactly when one of the three
/// bytes before it opened a sequence still covering it (prev1 >= C0, prev2 >= E0, prev3 >= F0);
/// C0/C1 are never valid; E0/F0/F4 bound the byte after them. F5-FF show up in the maximum.
struct ScanSse2 {
    __m128i prev = _mm_setzero_si128();
    __m128i error = _mm_setzero_si128();
    __m128i widest = _mm_setzero_si128();
    __m128i continuation = _mm_setzero_si128(); // two 64-bit counts

    void block(__m128i cur) noexcept {
        const __m128i prev1 = _mm_or_si128(_mm_slli_si128(cur, 1), _mm_srli_si128(prev, 15));
        const __m128i prev2 = _mm_or_si128(_mm_slli_si128(cur, 2), _mm_srli_si128(prev, 14));
        const __m128i prev3 = _mm_or_si128(_mm_slli_si128(cur, 3), _mm_srli_si128(prev, 13));
        const __m128i opened =
            _mm_or_si128(_mm_or_si128(_mm_subs_epu8(prev1, _mm_set1_epi8(char(0xBF))),
                                      _mm_subs_epu8(prev2, _mm_set1_epi8(char(0xDF)))),
                         _mm_subs_epu8(prev3, _mm_set1_epi8(char(0xEF))));
        const __m128i free_byte = _mm_cmpeq_epi8(opened, _mm_setzero_si128());
        // Signed compare: 80-BF are the bytes below C0 among the negative ones.
        const __m128i is_cont = _mm_cmplt_epi8(cur, _mm_set1_epi8(char(0xC0)));
        __m128i e = _mm_cmpeq_epi8(is_cont, free_byte);
        e = _mm_or_si128(e, _mm_cmpeq_epi8(_mm_and_si128(cur, _mm_set1_epi8(char(0xFE))),
                                           _mm_set1_epi8(char(0xC0))));
        e = _mm_or_si128(e, _mm_and_si128(_mm_cmpeq_epi8(prev1, _mm_set1_epi8(char(0xE0))),
                                          _mm_cmplt_epi8(cur, _mm_set1_epi8(char(0xA0)))));
        e = _mm_or_si128(e, _mm_and_si128(_mm_cmpeq_epi8(prev1, _mm_set1_epi8(char(0xF0))),
                                          _mm_cmplt_epi8(cur, _mm_set1_epi8(char(0x90)))));
        e = _mm_or_si128(e, _mm_and_si128(_mm_cmpeq_epi8(prev1, _mm_set1_epi8(char(0xF4))),
                                          _mm_cmpgt_epi8(cur, _mm_set1_epi8(char(0x8F)))));
        error = _mm_or_si128(error, e);
        widest = _mm_max_epu8(widest, cur);
        continuation =
            _mm_add_epi64(continuation, _mm_sad_epu8(_mm_and_si128(is_cont, _mm_set1_epi8(1)),
                                                     _mm_setzero_si128()));
        prev = cur;
    }

    Utf8Scan finish(std::size_t n) const noexcept {
        __m128i w = widest;
        w = _mm_max_epu8(w, _mm_srli_si128(w, 8));
        w = _mm_max_epu8(w, _mm_srli_si128(w, 4));
        w = _mm_max_epu8(w, _mm_srli_si128(w, 2));
        w = _mm_max_epu8(w, _mm_srli_si128(w, 1));
        const unsigned top = static_cast<unsigned>(_mm_cvtsi128_si32(w)) & 0xFF;
        Utf8Scan scan;
        if (_mm_movemask_epi8(error) != 0 || top > 0xF4) return scan;
        alignas(16) std::uint64_t counts[2];
        _mm_store_si128(reinterpret_cast<__m128i*>(counts), continuation);
        scan.valid = true;
        scan.length = n - static_cast<std::size_t>(counts[0] + counts[1]);
        scan.max_char = max_char_for(top);
        return scan;
    }
};

inline Utf8Scan scan_sse2(const unsigned char* p, std::size_t n, std::size_t i) noexcept {
    ScanSse2 s;
    int prev_mask = 0;
    for (; i + 16 <= n; i += 16) {
        const __m128i cur = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i));
        const int mask = _mm_movemask_epi8(cur);
        // ASCII after bytes that leave no sequence open: nothing to check or count.
        const bool skip = (mask | (prev_mask & 0xE000)) == 0;
        prev_mask = mask;
        if (skip) {
            s.prev = cur;
            continue;
        }
        s.block(cur);
    }
    alignas(16) unsigned char tail[16] = {};
    if (i < n) std::memcpy(tail, p + i, n - i);
    s.block(_mm_load_si128(reinterpret_cast<const __m128i*>(tail)));
    s.block(_mm_setzero_si128()); // a sequence left open at the end expects continuations here
    return s.finish(n);
}
#endif

// ---- decode ----

/// The code point of the valid sequence at q, whatever its length, without branches: the
/// lead byte's payload bits go above those of the longest sequence the unit width allows
/// (3 bytes for 2-byte units, 4 for 4-byte ones), and a shift drops the bits of the bytes
/// that belong to the following code points. Reads q[0..3].
template <typename Unit> inline std::uint32_t code_point_at(const unsigned char* q) noexcept {
    static constexpr std::uint8_t kLeadMask[16] = {0x7F, 0x7F, 0x7F, 0x7F, 0x7F, 0x7F, 0x7F, 0x7F,
                                                   0,    0,    0,    0,    0x1F, 0x1F, 0x0F, 0x07};
    const std::uint32_t w = std::uint32_t{q[0]} | std::uint32_t{q[1]} << 8 |
                            std::uint32_t{q[2]} << 16 | std::uint32_t{q[3]} << 24;
    const std::uint32_t b0 = w & 0xFF;
    if constexpr (sizeof(Unit) == 2) {
        static constexpr std::uint8_t kShift[16] = {12, 12, 12, 12, 12, 12, 12, 12,
                                                    0,  0,  0,  0,  6,  6,  0,  0};
        const std::uint32_t cp =
            (b0 & kLeadMask[b0 >> 4]) << 12 | ((w >> 2) & 0xFC0) | ((w >> 16) & 0x3F);
        return cp >> kShift[b0 >> 4];
    } else {
        static constexpr std::uint8_t kShift[16] = {18, 18, 18, 18, 18, 18, 18, 18,
                                                    0,  0,  0,  0,  12, 12, 6,  0};
        const std::uint32_t cp = (b0 & kLeadMask[b0 >> 4]) << 18 | ((w << 4) & 0x3F000) |
                                 ((w >> 10) & 0xFC0) | ((w >> 24) & 0x3F);
        return cp >> kShift[b0 >> 4];
    }
}

/// Bit k set when q[k] starts a code point (is not a continuation byte), k < 64.
inline std::uint64_t starts64_portable(const unsigned char* q) noexcept {
    std::uint64_t starts = 0;
    for (int k = 0; k < 64; ++k)
        starts |= std::uint64_t{(q[k] & 0xC0) != 0x80} << k;
    return starts;
}

inline std::uint64_t starts64(const unsigned char* q) noexcept {
#if defined(__SSE2__)
    std::uint64_t cont = 0;
    for (int k = 0; k < 4; ++k) {
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 16 * k));
        const auto m =
            static_cast<unsigned>(_mm_movemask_epi8(_mm_cmplt_epi8(v, _mm_set1_epi8(char(0xC0)))));
        cont |= std::uint64_t{m} << (16 * k);
    }
    return ~cont;
#else
    return starts64_portable(q);
#endif
}

/// 2- and 4-byte units, 64 input bytes per block. `limit` masks the bytes that exist.
/// Reads q[0..66].
template <typename Unit>
inline std::size_t decode_block64(const unsigned char* q, std::uint64_t limit, Unit* out,
                                  std::size_t j) noexcept {
    std::uint64_t starts = starts64(q) & limit;
    while (starts) {
        out[j++] = static_cast<Unit>(code_point_at<Unit>(q + std::countr_zero(starts)));
        starts &= starts - 1;
    }
    return j;
}

template <typename Unit>
inline void decode_wide(const unsigned char* p, std::size_t n, Unit* out,
                        std::size_t ascii) noexcept {
    std::size_t i = 0;
    for (; i < ascii; ++i)
        out[i] = p[i];
    std::size_t j = i;
    for (; i + 67 <= n; i += 64) {
        std::uint64_t any = 0;
        for (int k = 0; k < 8; ++k) {
            std::uint64_t word;
            std::memcpy(&word, p + i + 8 * k, 8);
            any |= word;
        }
        if (!(any & 0x8080808080808080u)) {
            for (int k = 0; k < 64; ++k)
                out[j + k] = p[i + k];
            j += 64;
            continue;
        }
        j = decode_block64(p + i, ~std::uint64_t{0}, out, j);
    }
    // The last (up to 66) bytes from a zero-padded copy, so the block may read past them.
    alignas(16) unsigned char tail[144] = {};
    const std::size_t rest = n - i;
    if (rest) std::memcpy(tail, p + i, rest);
    for (std::size_t k = 0; k < rest; k += 64) {
        const std::size_t have = rest - k;
        const std::uint64_t limit = have >= 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << have) - 1;
        j = decode_block64(tail + k, limit, out, j);
    }
    out[j] = 0;
}

/// 1-byte units: every non-ASCII character is a C2/C3 pair. Each byte yields the unit it
/// would be as a lead, stored at the current output position, which only advances past
/// non-continuation bytes; so a continuation's (or, at the end, a masked byte's) store lands
/// where the next unit or the terminator goes.
inline void decode_latin1_portable(const unsigned char* p, std::size_t n, unsigned char* out,
                                   std::size_t ascii) noexcept {
    if (ascii) std::memcpy(out, p, ascii); // p may be null when n is 0
    std::size_t j = ascii;
    if (n > ascii) {
        for (std::size_t i = ascii; i + 1 < n; ++i) {
            const unsigned b = p[i], next = p[i + 1];
            const unsigned lead = ((b & 3) << 6) | (next & 0x3F);
            out[j] = static_cast<unsigned char>(b < 0x80 ? b : lead);
            j += (b & 0xC0) != 0x80;
        }
        const unsigned last = p[n - 1]; // ASCII or the end of a pair
        out[j] = static_cast<unsigned char>(last);
        j += last < 0x80;
    }
    out[j] = 0;
}

#if defined(__SSE2__)
/// One move stage of the in-register compaction: bytes whose shift has bit `B` move B places
/// down, and leave their old place with no shift so its stale copy never moves again.
template <int B> inline void compact_stage(__m128i& units, __m128i& shift) noexcept {
    const __m128i bit = _mm_set1_epi8(B);
    const __m128i leave = _mm_cmpeq_epi8(_mm_and_si128(shift, bit), bit);
    const __m128i arrive = _mm_srli_si128(leave, B);
    units = _mm_or_si128(_mm_and_si128(arrive, _mm_srli_si128(units, B)),
                         _mm_andnot_si128(arrive, units));
    shift = _mm_or_si128(_mm_and_si128(arrive, _mm_srli_si128(shift, B)),
                         _mm_andnot_si128(arrive, _mm_andnot_si128(leave, shift)));
}

/// The units of 16 input bytes (q[16] is read too), packed to the front of 16 bytes at
/// out + j; returns j plus their count. Each byte first becomes the unit it would be as a
/// C2/C3 lead, then each non-continuation byte moves down by the number of continuation
/// bytes before it, in four power-of-two stages: kept bytes keep their order and never land
/// on each other (their shifts never decrease along the block), so no stage loses one.
inline std::size_t latin1_block16(const unsigned char* q, unsigned char* out,
                                  std::size_t j) noexcept {
    const __m128i cur = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q));
    const __m128i next = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 1));
    // (b & 3) << 6 per byte: a 16-bit shift spills into the neighbour only bits the mask drops.
    const __m128i lead =
        _mm_or_si128(_mm_and_si128(_mm_slli_epi16(cur, 6), _mm_set1_epi8(char(0xC0))),
                     _mm_and_si128(next, _mm_set1_epi8(0x3F)));
    const __m128i high = _mm_cmplt_epi8(cur, _mm_setzero_si128());
    __m128i units = _mm_or_si128(_mm_andnot_si128(high, cur), _mm_and_si128(high, lead));
    const __m128i drop = _mm_cmplt_epi8(cur, _mm_set1_epi8(char(0xC0)));
    __m128i before = _mm_and_si128(drop, _mm_set1_epi8(1)); // running count of dropped bytes
    before = _mm_add_epi8(before, _mm_slli_si128(before, 1));
    before = _mm_add_epi8(before, _mm_slli_si128(before, 2));
    before = _mm_add_epi8(before, _mm_slli_si128(before, 4));
    before = _mm_add_epi8(before, _mm_slli_si128(before, 8));
    const auto dropped = static_cast<std::size_t>(_mm_extract_epi16(before, 7) >> 8);
    __m128i shift = _mm_andnot_si128(drop, before);
    compact_stage<1>(units, shift);
    compact_stage<2>(units, shift);
    compact_stage<4>(units, shift);
    compact_stage<8>(units, shift);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + j), units);
    return j + 16 - dropped;
}

inline void decode_latin1_sse2(const unsigned char* p, std::size_t n, unsigned char* out,
                               std::size_t ascii) noexcept {
    if (ascii) std::memcpy(out, p, ascii); // p may be null when n is 0
    std::size_t i = ascii, j = ascii;
    // Each block stores 16 bytes; with 16 more input bytes after it, at least 16 units
    // remain from j on (a unit takes at most 2 bytes), so the store stays inside the string.
    for (; i + 32 <= n; i += 16) {
        const __m128i cur = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i));
        if (_mm_movemask_epi8(cur) == 0) {
            _mm_storeu_si128(reinterpret_cast<__m128i*>(out + j), cur);
            j += 16;
            continue;
        }
        j = latin1_block16(p + i, out, j);
    }
    // The last (up to 31) bytes from a zero-padded copy into a scratch output; the padding
    // comes out as one 0 unit per byte, at the end.
    alignas(16) unsigned char tail[48] = {};
    alignas(16) unsigned char units[48];
    const std::size_t rest = n - i;
    if (rest) std::memcpy(tail, p + i, rest);
    std::size_t count = latin1_block16(tail, units, 0);
    std::size_t padding = 16 - rest;
    if (rest > 16) {
        count = latin1_block16(tail + 16, units, count);
        padding += 16;
    }
    count -= padding;
    std::memcpy(out + j, units, count);
    out[j + count] = 0;
}
#endif

} // namespace utf8

/// Validate [p, p + n) as UTF-8 with surrogates allowed, and measure it. The first
/// `ascii` bytes are known to be ASCII already.
inline Utf8Scan scan_utf8(const char* text, std::size_t n, std::size_t ascii = 0) noexcept {
    const auto* p = reinterpret_cast<const unsigned char*>(text);
#if defined(__SSE2__)
    return utf8::scan_sse2(p, n, ascii);
#else
    return utf8::scan_portable(p, n, ascii);
#endif
}

/// Write the code units of [p, p + n), which scan_utf8() found valid and no wider than
/// `Unit`, to `out`: scan.length units and a 0 after them, so `out` needs room for
/// scan.length + 1 units (CPython allocates a string's terminator with it). The first
/// `ascii` bytes are known to be ASCII.
template <typename Unit>
inline void decode_utf8(const char* text, std::size_t n, Unit* out,
                        std::size_t ascii = 0) noexcept {
    const auto* p = reinterpret_cast<const unsigned char*>(text);
    if constexpr (sizeof(Unit) == 1) {
#if defined(__SSE2__)
        utf8::decode_latin1_sse2(p, n, reinterpret_cast<unsigned char*>(out), ascii);
#else
        utf8::decode_latin1_portable(p, n, reinterpret_cast<unsigned char*>(out), ascii);
#endif
    } else
        utf8::decode_wide(p, n, out, ascii);
}

/// Strings of at most this many bytes take one copy into a zero-padded SmallText, which the
/// scan and the decoder then read in whole blocks: short strings would otherwise spend more
/// on copying their odd-sized tails (once per pass) than on the blocks themselves.
inline constexpr std::size_t kSmallText = 64;

struct SmallText {
    // Blocks read up to 3 bytes past a 64-byte block (decode) or one 16-byte block past the
    // end (scan); all of it zero, which reads as ASCII.
    alignas(16) unsigned char bytes[kSmallText + 80] = {};

    SmallText(const char* text, std::size_t n) noexcept {
        if (n) std::memcpy(bytes, text, n); // text may be null when n is 0
    }
};

/// scan_utf8() of the `n` bytes (n <= kSmallText) held in `text`.
inline Utf8Scan scan_small(const SmallText& text, std::size_t n) noexcept {
#if defined(__SSE2__)
    utf8::ScanSse2 s;
    // Up to and including the block after the last byte, where an open sequence shows.
    for (std::size_t k = 0; k <= n; k += 16)
        s.block(_mm_load_si128(reinterpret_cast<const __m128i*>(text.bytes + k)));
    return s.finish(n);
#else
    return utf8::scan_portable(text.bytes, n, 0);
#endif
}

/// decode_utf8() of the `n` bytes held in `text`, which scan_small() found valid, `length`
/// code points long and no wider than `Unit`. Writes length + 1 units as decode_utf8 does.
template <typename Unit>
inline void decode_small(const SmallText& text, std::size_t n, std::size_t length,
                         Unit* out) noexcept {
    if constexpr (sizeof(Unit) == 1) {
#if defined(__SSE2__)
        alignas(16) unsigned char units[kSmallText + 16];
        std::size_t count = 0;
        for (std::size_t k = 0; k < n; k += 16)
            count = utf8::latin1_block16(text.bytes + k, units, count);
        std::memcpy(out, units, length);
        out[length] = 0;
#else
        utf8::decode_latin1_portable(text.bytes, n, reinterpret_cast<unsigned char*>(out), 0);
#endif
    } else {
        const std::uint64_t limit = n >= 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << n) - 1;
        out[utf8::decode_block64(text.bytes, limit, out, 0)] = 0;
    }
}

} // namespace picklex::detail
