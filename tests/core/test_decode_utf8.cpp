// tests/core/test_decode_utf8.cpp: scan_utf8/decode_utf8 (SSE2 and portable paths) against a
// plain reference decoder of UTF-8 with surrogates allowed (Python's "surrogatepass").
#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "picklex/detail/decode_utf8.hpp"
#include "utf8_reference.hpp"

namespace picklex {
namespace {

using detail::Utf8Scan;

using testing::reference_max_char;
/// The reference's verdict on `s` (see utf8_reference.hpp).
std::optional<std::u32string> reference(std::string_view s) { return testing::reference_decode(s); }
std::string encode(const std::u32string& cps) { return testing::encode_utf8(cps); }

std::string hex(std::string_view s) {
    std::string out;
    char buf[4];
    for (unsigned char c : s) {
        std::snprintf(buf, sizeof buf, "%02X ", c);
        out += buf;
    }
    return out;
}

std::size_t ascii_len(std::string_view s) {
    return detail::ascii_prefix(s.data(), s.size());
}

/// Decode with one implementation into a buffer of exactly length + 1 units on the heap
/// (so ASan sees any write past it) and check the result and the terminator.
template <typename Unit, typename Decode>
void expect_decodes(std::string_view s, const std::u32string& want, Decode decode,
                    const char* what) {
    std::vector<Unit> out(want.size() + 1, static_cast<Unit>(0x5A5A5A5A));
    decode(out.data());
    EXPECT_EQ(out.back(), Unit{0}) << what << ": terminator, input " << hex(s);
    out.pop_back();
    const std::u32string got(out.begin(), out.end());
    EXPECT_EQ(got, want) << what << ": input " << hex(s);
}

/// Every scan and decode path agrees with the reference on `bytes`.
void check(std::string_view bytes) {
    // An exact-size heap copy, so reads past the end are caught.
    const std::vector<char> heap(bytes.begin(), bytes.end());
    const char* p = heap.data();
    const std::size_t n = heap.size();
    const auto* u = reinterpret_cast<const unsigned char*>(p);
    const std::string_view s(p, n);
    const auto want = reference(s);
    const std::size_t ascii = ascii_len(s);

    std::vector<std::pair<const char*, Utf8Scan>> scans = {
        {"scan_utf8", detail::scan_utf8(p, n)},
        {"scan_utf8(ascii)", detail::scan_utf8(p, n, ascii)},
        {"scan_portable", detail::utf8::scan_portable(u, n, 0)},
        {"scan_portable(ascii)", detail::utf8::scan_portable(u, n, ascii)},
    };
    const bool small = n <= detail::kSmallText;
    const std::optional<detail::SmallText> text =
        small ? std::optional<detail::SmallText>(std::in_place, p, n) : std::nullopt;
    if (small) scans.push_back({"scan_small", detail::scan_small(*text, n)});
#if defined(__SSE2__)
    scans.push_back({"scan_sse2", detail::utf8::scan_sse2(u, n, 0)});
    scans.push_back({"scan_sse2(ascii)", detail::utf8::scan_sse2(u, n, ascii)});
#endif
    for (const auto& [what, scan] : scans) {
        ASSERT_EQ(scan.valid, want.has_value()) << what << ": input " << hex(s);
        if (!want) continue;
        EXPECT_EQ(scan.length, want->size()) << what << ": input " << hex(s);
        EXPECT_EQ(scan.max_char, reference_max_char(*want)) << what << ": input " << hex(s);
    }
    if (!want) return;

    const std::uint32_t max_char = reference_max_char(*want);
    for (const std::size_t skip : {std::size_t{0}, ascii / 2, ascii}) {
        if (max_char <= 0xFF) {
            expect_decodes<unsigned char>(
                s, *want, [&](unsigned char* out) { detail::decode_utf8(p, n, out, skip); },
                "decode_utf8<1>");
            expect_decodes<unsigned char>(
                s, *want,
                [&](unsigned char* out) { detail::utf8::decode_latin1_portable(u, n, out, skip); },
                "decode_latin1_portable");
        }
        if (max_char <= 0xFFFF)
            expect_decodes<std::uint16_t>(
                s, *want, [&](std::uint16_t* out) { detail::decode_utf8(p, n, out, skip); },
                "decode_utf8<2>");
        expect_decodes<std::uint32_t>(
            s, *want, [&](std::uint32_t* out) { detail::decode_utf8(p, n, out, skip); },
            "decode_utf8<4>");
    }
    if (!small) return;
    const std::size_t length = want->size();
    if (max_char <= 0xFF)
        expect_decodes<unsigned char>(
            s, *want, [&](unsigned char* out) { detail::decode_small(*text, n, length, out); },
            "decode_small<1>");
    if (max_char <= 0xFFFF)
        expect_decodes<std::uint16_t>(
            s, *want, [&](std::uint16_t* out) { detail::decode_small(*text, n, length, out); },
            "decode_small<2>");
    expect_decodes<std::uint32_t>(
        s, *want, [&](std::uint32_t* out) { detail::decode_small(*text, n, length, out); },
        "decode_small<4>");
}

std::string bytes(std::initializer_list<unsigned> values) {
    std::string out;
    for (unsigned v : values)
        out += static_cast<char>(v);
    return out;
}

/// `core` alone and behind prefixes that put it at every offset around the block sizes
/// (16 bytes in the scan, 16 or 64 in the decoders, 67 bytes kept back for the tail), and
/// followed by ASCII or by more non-ASCII text.
void check_everywhere(const std::string& core) {
    check(core);
    for (std::size_t offset : {1,  2,  3,  13, 14, 15, 16, 17, 31,  32,  47, 60,
                               61, 62, 63, 64, 65, 66, 67, 70, 127, 128, 130}) {
        check(std::string(offset, 'a') + core);
        check(std::string(offset, 'a') + core + "z");
        check(std::string(offset, 'a') + core + std::string(40, 'z'));
        std::string mixed;
        while (mixed.size() < offset)
            mixed += mixed.size() % 3 ? "\xC3\xA9" : "\xE4\xB8\x80";
        check(mixed + core);
        check(mixed + core + "\xC2\x80" + std::string(offset, 'b'));
    }
}

TEST(DecodeUtf8, Empty) {
    check("");
    EXPECT_TRUE(detail::scan_utf8("", 0).valid);
    EXPECT_EQ(detail::scan_utf8("", 0).max_char, 0x7Fu);
}

TEST(DecodeUtf8, AcceptsEveryValidBoundary) {
    const std::u32string boundaries = {
        0x00,   0x7F,    0x80,    0xBF,    0xC0,    0xFF,     0x100,   0x7FF,  0x800,
        0xFFF,  0x1000,  0xD7FF,  0xD800,  0xDBFF,  0xDC00,   0xDFFF,  0xE000, 0xFFFD,
        0xFFFF, 0x10000, 0x3FFFF, 0x40000, 0xFFFFF, 0x100000, 0x10FFFF};
    for (char32_t cp : boundaries) {
        const std::string one = encode(std::u32string(1, cp));
        ASSERT_TRUE(reference(one).has_value()) << std::hex << static_cast<std::uint32_t>(cp);
        check_everywhere(one);
        check_everywhere(one + one + one);
    }
}

TEST(DecodeUtf8, MaxCharIsExact) {
    const std::pair<std::u32string, std::uint32_t> cases[] = {
        {U"abc", 0x7F},
        {U"a\u00FF", 0xFF},
        {U"\u00FFa", 0xFF},
        {U"a\u0100", 0xFFFF},
        {U"\u0100", 0xFFFF},
        {U"\uFFFFz", 0xFFFF},
        {U"a\U00010000", 0x10FFFF},
        {U"\U0010FFFF", 0x10FFFF},
        {U"\u00E9\u07FF", 0xFFFF},
    };
    for (const auto& [text, max_char] : cases) {
        const std::string s = encode(text);
        for (const std::string& t : {s, std::string(40, 'x') + s, s + std::string(70, 'y')}) {
            EXPECT_EQ(detail::scan_utf8(t.data(), t.size()).max_char, max_char) << hex(t);
            EXPECT_EQ(detail::utf8::scan_portable(reinterpret_cast<const unsigned char*>(t.data()),
                                                  t.size(), 0)
                          .max_char,
                      max_char)
                << hex(t);
            check(t);
        }
    }
}

TEST(DecodeUtf8, SurrogatesPass) {
    for (unsigned second = 0xA0; second <= 0xBF; ++second)
        for (unsigned third : {0x80u, 0xBFu}) {
            const std::string s = bytes({0xED, second, third});
            ASSERT_TRUE(detail::scan_utf8(s.data(), s.size()).valid) << hex(s);
            check_everywhere(s);
        }
}

TEST(DecodeUtf8, RejectsMalformed) {
    const std::vector<std::string> bad = {
        bytes({0x80}),
        bytes({0xBF}), // lone continuation bytes
        bytes({0xC0, 0x80}),
        bytes({0xC0, 0xAF}), // overlong 2-byte forms
        bytes({0xC1, 0xBF}),
        bytes({0xE0, 0x80, 0x80}), // overlong 3-byte forms
        bytes({0xE0, 0x9F, 0xBF}),
        bytes({0xF0, 0x80, 0x80, 0x80}), // overlong 4-byte forms
        bytes({0xF0, 0x8F, 0xBF, 0xBF}),
        bytes({0xF4, 0x90, 0x80, 0x80}),
        bytes({0xF4, 0xBF, 0xBF, 0xBF}), // past U+10FFFF
        bytes({0xF5, 0x80, 0x80, 0x80}),
        bytes({0xF7, 0xBF, 0xBF, 0xBF}),
        bytes({0xF8, 0x88, 0x80, 0x80, 0x80}),
        bytes({0xFE}),
        bytes({0xFF}),
        bytes({0xC2}),
        bytes({0xDF}),
        bytes({0xE0, 0xA0}),
        bytes({0xEF, 0xBF}), // truncated
        bytes({0xF0, 0x90, 0x80}),
        bytes({0xF4, 0x8F}),
        bytes({0xF1}),
        bytes({0xC2, 0x41}),
        bytes({0xE1, 0x80, 0x41}),
        bytes({0xF1, 0x80, 0x80, 0x41}), // cut short
        bytes({0xC2, 0xC2, 0x80}),
        bytes({0xE1, 0xC2, 0x80}), // lead in a sequence
        bytes({0xC2, 0x80, 0x80}),
        bytes({0xE1, 0x80, 0x80, 0x80}),
        bytes({0xF1, 0x80, 0x80, 0x80, 0x80}),
    };
    for (const std::string& core : bad) {
        ASSERT_FALSE(reference(core).has_value()) << hex(core);
        check_everywhere(core);
    }
}

TEST(DecodeUtf8, EveryOneAndTwoByteInput) {
    for (unsigned a = 0; a < 256; ++a) {
        check(bytes({a}));
        for (unsigned b = 0; b < 256; ++b)
            check(bytes({a, b}));
    }
}

TEST(DecodeUtf8, EveryLeadWithEverySecondByte) {
    // The second byte is where the E0/F0/F4 ranges are decided; vary it fully behind every
    // lead byte, with well-formed and broken bytes after it, at a block edge and inside one.
    for (unsigned lead = 0xC0; lead < 0x100; ++lead)
        for (unsigned second = 0; second < 256; ++second)
            for (unsigned rest : {0x80u, 0xBFu, 0x41u}) {
                const std::string core = bytes({lead, second, rest, rest});
                check(core);
                check(std::string(15, 'a') + core);
                check(std::string(30, 'a') + core + "\xC3\xA9");
            }
}

TEST(DecodeUtf8, EndsWithEachSequenceLength) {
    for (const char32_t last : {U'\u00E9', U'\u0416', U'\u4E2D', U'\U0001F600'})
        for (std::size_t n = 0; n < 200; ++n) {
            std::u32string text;
            for (std::size_t k = 0; k < n; ++k)
                text += k % 5 == 4 ? U' ' : U"\u00E9\u0416\u4E2D\U0001F600x"[k % 5];
            text += last;
            check(encode(text));
        }
}

TEST(DecodeUtf8, RandomTextAndCorruptions) {
    std::mt19937_64 rng(20240611);
    const std::pair<char32_t, char32_t> ranges[] = {{0x20, 0x7E},     {0x80, 0xFF},
                                                    {0x100, 0x7FF},   {0x800, 0xFFFF},
                                                    {0xD800, 0xDFFF}, {0x10000, 0x10FFFF}};
    for (int round = 0; round < 4000; ++round) {
        // Text drawn from one to three ranges, so each width occurs alone and mixed.
        const unsigned classes = 1 + static_cast<unsigned>(rng() % 63);
        std::vector<std::pair<char32_t, char32_t>> use;
        for (unsigned k = 0; k < 6; ++k)
            if (classes >> k & 1) use.push_back(ranges[k]);
        std::u32string text;
        const std::size_t length = rng() % (round % 10 == 0 ? 600 : 90);
        for (std::size_t k = 0; k < length; ++k) {
            const auto& [lo, hi] = use[rng() % use.size()];
            text += static_cast<char32_t>(lo + rng() % (hi - lo + 1));
        }
        std::string s = encode(text);
        check(s);
        if (s.empty()) continue;
        for (int flips = 0; flips < 3; ++flips) {
            std::string broken = s;
            broken[rng() % broken.size()] = static_cast<char>(rng());
            check(broken);
            check(broken.substr(0, rng() % broken.size()));
        }
    }
}

TEST(DecodeUtf8, StartsMaskMatchesPortable) {
    std::mt19937_64 rng(7);
    unsigned char block[64];
    for (int round = 0; round < 1000; ++round) {
        for (unsigned char& c : block)
            c = static_cast<unsigned char>(rng());
        EXPECT_EQ(detail::utf8::starts64(block), detail::utf8::starts64_portable(block));
    }
}

TEST(DecodeUtf8, LongTextOfEachScript) {
    for (const std::u32string& word :
         {std::u32string(U"d\u00E9j\u00E0 "), std::u32string(U"\u043F\u0440\u0438 "),
          std::u32string(U"\u4E2D\u6587 "), std::u32string(U"\U0001F600\U0001D400 ")}) {
        std::u32string text;
        for (int k = 0; k < 5000; ++k)
            text += word;
        check(encode(text));
        check(std::string(1000, 'a') + encode(text) + std::string(1000, 'a'));
    }
}

} // namespace
} // namespace picklex
