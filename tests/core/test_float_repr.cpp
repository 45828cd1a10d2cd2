// tests/core/test_float_repr.cpp: format_float_repr against Python's repr() of doubles.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdlib>
#include <random>
#include <string>

#include "golden.hpp"
#include "picklex/writer.hpp"

namespace picklex {
namespace {

std::string repr(double value) {
    char buf[64];
    std::memset(buf, '#', sizeof buf);
    const std::size_t n = format_float_repr(value, buf);
    EXPECT_LE(n, 32u);
    // The function promises at most 32 bytes: nothing past them may be touched.
    for (std::size_t i = 32; i < sizeof buf; ++i) EXPECT_EQ(buf[i], '#');
    return std::string(buf, n);
}

double from_bits(std::uint64_t bits) { return std::bit_cast<double>(bits); }

TEST(FloatRepr, MatchesPythonReprGolden) {
    const auto rows = test::read_golden("float_repr.txt");
    ASSERT_GT(rows.size(), 1000u);
    int mismatches = 0;
    for (const auto& f : rows) {
        const double value = from_bits(std::stoull(f.at(0), nullptr, 16));
        const std::string got = repr(value);
        if (got != f.at(1) && ++mismatches <= 20)
            ADD_FAILURE() << "bits " << f.at(0) << ": repr " << f.at(1) << ", got " << got;
    }
    EXPECT_EQ(mismatches, 0);
}

TEST(FloatRepr, Specials) {
    EXPECT_EQ(repr(0.0), "0.0");
    EXPECT_EQ(repr(-0.0), "-0.0");
    EXPECT_EQ(repr(INFINITY), "inf");
    EXPECT_EQ(repr(-INFINITY), "-inf");
    EXPECT_EQ(repr(NAN), "nan");
    EXPECT_EQ(repr(-NAN), "nan"); // Python drops the sign of a NaN
}

TEST(FloatRepr, NotationSwitchPoints) {
    EXPECT_EQ(repr(1e16), "1e+16");
    EXPECT_EQ(repr(9999999999999998.0), "9999999999999998.0");
    EXPECT_EQ(repr(1e-4), "0.0001");
    EXPECT_EQ(repr(1e-5), "1e-05");
    EXPECT_EQ(repr(1.5e300), "1.5e+300");
    EXPECT_EQ(repr(5e-324), "5e-324");
    EXPECT_EQ(repr(123.0), "123.0");
    EXPECT_EQ(repr(0.1), "0.1");
}

// Beyond the golden: random doubles must round-trip through strtod and look like Python's
// output (digits, one '.', or an exponent with sign and at least two digits).
TEST(FloatRepr, RandomBitPatternsRoundTrip) {
    std::mt19937_64 rng(20240607);
    for (int i = 0; i < 200000; ++i) {
        const double value = from_bits(rng());
        if (std::isnan(value)) continue;
        const std::string text = repr(value);
        ASSERT_EQ(std::strtod(text.c_str(), nullptr), value) << text;
        const auto e = text.find('e');
        if (e == std::string::npos) {
            ASSERT_NE(text.find('.'), std::string::npos) << text;
        } else {
            ASSERT_TRUE(text[e + 1] == '+' || text[e + 1] == '-') << text;
            ASSERT_GE(text.size() - e - 2, 2u) << text;
        }
    }
}

} // namespace
} // namespace picklex
