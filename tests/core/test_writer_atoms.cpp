// tests/core/test_writer_atoms.cpp: every Writer atom at every protocol, byte for byte.
//
// The expected bytes in writer_atoms.txt are what the interpreter's pickle writes for the
// same value (wrapper opcodes and memo PUTs stripped); a few hand-written cases below keep
// the most important boundaries readable without the golden.
#include <gtest/gtest.h>

#include <bit>
#include <cstdint>
#include <set>
#include <string>

#include "golden.hpp"
#include "picklex/writer.hpp"

namespace picklex {
namespace {

using namespace std::string_literals;

std::string bytes_of(const Writer& w) { return std::string(w.data(), w.size()); }

/// Run one golden line's Writer call; returns false if the call reported failure.
bool apply(Writer& w, const test::Fields& f) {
    const std::string& kind = f.at(0);
    const std::string& arg = f.at(2);
    if (kind == "none") return w.save_none();
    if (kind == "bool") return w.save_bool(arg == "1");
    if (kind == "int") return w.save_int(std::stoll(arg));
    if (kind == "long_bytes") {
        const std::string raw = test::from_hex(arg);
        return w.save_long_bytes(reinterpret_cast<const std::uint8_t*>(raw.data()), raw.size());
    }
    if (kind == "long_text") return w.save_long_text(arg);
    if (kind == "float") return w.save_float(std::bit_cast<double>(std::stoull(arg, nullptr, 16)));
    if (kind == "str") {
        const std::string utf8 = test::from_hex(arg);
        if (w.protocol() >= 1) return w.save_unicode_utf8(utf8.data(), utf8.size());
        const test::Units units = test::to_units(test::decode_utf8(utf8));
        return w.save_unicode_text(units.kind, units.data(), test::decode_utf8(utf8).size());
    }
    if (kind == "bytes") {
        const std::string data = test::from_hex(arg);
        return w.save_bytes(data.data(), data.size());
    }
    if (kind == "bytearray") {
        const std::string data = test::from_hex(arg);
        return w.save_bytearray(data.data(), data.size());
    }
    if (kind == "next_buffer") return w.save_next_buffer(arg == "1");
    if (kind == "memo_put") return w.save_memo_put(std::stoull(arg));
    if (kind == "memo_get") return w.save_memo_get(std::stoull(arg));
    if (kind == "global") {
        const auto space = arg.find(' ');
        return w.save_global_text(std::string_view(arg).substr(0, space),
                                  std::string_view(arg).substr(space + 1));
    }
    if (kind == "ext") return w.save_ext(static_cast<std::uint32_t>(std::stoul(arg)));
    if (kind == "persid") return w.save_persid_text(arg);
    ADD_FAILURE() << "unknown golden kind " << kind;
    return false;
}

TEST(WriterAtoms, MatchPickleGolden) {
    const auto rows = test::read_golden("writer_atoms.txt");
    std::set<std::string> kinds_seen;
    for (const auto& f : rows) {
        const int protocol = std::stoi(f.at(1));
        SCOPED_TRACE(f.at(0) + " protocol " + f.at(1) + " arg " + f.at(2).substr(0, 80));
        Writer w;
        ASSERT_TRUE(w.begin(protocol));
        ASSERT_TRUE(apply(w, f)) << w.error().message();
        EXPECT_EQ(test::to_hex(bytes_of(w)), f.at(3));
        kinds_seen.insert(f.at(0));
    }
    // Every atom kind the generator writes is exercised; a shrunken golden would fail here.
    for (const char* kind : {"none", "bool", "int", "long_bytes", "long_text", "float", "str",
                             "bytes", "bytearray", "next_buffer", "memo_put", "memo_get",
                             "global", "ext", "persid"})
        EXPECT_TRUE(kinds_seen.count(kind)) << kind;
}

// Protocol-0 text for str must not depend on the unit width the caller stores it in.
TEST(WriterAtoms, UnicodeTextIsIndependentOfUnitWidth) {
    for (const auto& f : test::read_golden("writer_atoms.txt")) {
        if (f.at(0) != "str" || f.at(1) != "0") continue;
        const std::u32string text = test::decode_utf8(test::from_hex(f.at(2)));
        for (int kind : {1, 2, 4}) {
            const test::Units units = test::to_units(text, kind);
            if (units.kind != kind) continue; // does not fit this width
            Writer w;
            ASSERT_TRUE(w.begin(0));
            ASSERT_TRUE(w.save_unicode_text(units.kind, units.data(), text.size()));
            EXPECT_EQ(test::to_hex(bytes_of(w)), f.at(3)) << "kind " << kind;
        }
    }
}

std::string int_bytes(int protocol, std::int64_t value) {
    Writer w;
    EXPECT_TRUE(w.begin(protocol));
    EXPECT_TRUE(w.save_int(value));
    return bytes_of(w);
}

TEST(WriterAtoms, IntBoundariesReadable) {
    EXPECT_EQ(int_bytes(2, 0), "K\x00"s);
    EXPECT_EQ(int_bytes(2, 255), "K\xff"s);
    EXPECT_EQ(int_bytes(2, 256), "M\x00\x01"s);
    EXPECT_EQ(int_bytes(2, 65535), "M\xff\xff"s);
    EXPECT_EQ(int_bytes(2, 65536), "J\x00\x00\x01\x00"s);
    EXPECT_EQ(int_bytes(2, -1), "J\xff\xff\xff\xff"s);
    EXPECT_EQ(int_bytes(2, INT32_MAX), "J\xff\xff\xff\x7f"s);
    EXPECT_EQ(int_bytes(2, INT32_MIN), "J\x00\x00\x00\x80"s);
    EXPECT_EQ(int_bytes(2, std::int64_t{INT32_MAX} + 1), "\x8a\x05\x00\x00\x00\x80\x00"s);
    EXPECT_EQ(int_bytes(2, std::int64_t{INT32_MIN} - 1), "\x8a\x05\xff\xff\xff\x7f\xff"s);
    EXPECT_EQ(int_bytes(2, INT64_MAX), "\x8a\x08\xff\xff\xff\xff\xff\xff\xff\x7f"s);
    EXPECT_EQ(int_bytes(2, INT64_MIN), "\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x80"s);
    EXPECT_EQ(int_bytes(0, 5), "I5\n"s);
    EXPECT_EQ(int_bytes(0, -5), "I-5\n"s);
    EXPECT_EQ(int_bytes(0, std::int64_t{1} << 40), "L1099511627776L\n"s);
    EXPECT_EQ(int_bytes(1, INT64_MIN), "L-9223372036854775808L\n"s);
}

TEST(WriterAtoms, LongBytesAboveOneByteLengthUseLong4) {
    const std::string raw(300, '\x11');
    Writer w;
    ASSERT_TRUE(w.begin(2));
    ASSERT_TRUE(w.save_long_bytes(reinterpret_cast<const std::uint8_t*>(raw.data()), raw.size()));
    EXPECT_EQ(bytes_of(w), std::string("\x8b\x2c\x01\x00\x00", 5) + raw);
}

TEST(WriterAtoms, BoolPerProtocol) {
    Writer w;
    ASSERT_TRUE(w.begin(1));
    ASSERT_TRUE(w.save_bool(true));
    ASSERT_TRUE(w.save_bool(false));
    EXPECT_EQ(bytes_of(w), "I01\nI00\n"s);
    ASSERT_TRUE(w.begin(2));
    ASSERT_TRUE(w.save_bool(true));
    ASSERT_TRUE(w.save_bool(false));
    EXPECT_EQ(bytes_of(w), "\x88\x89"s);
}

TEST(WriterAtoms, BeginResetsOutputAndError) {
    Writer w;
    ASSERT_TRUE(w.begin(3));
    ASSERT_TRUE(w.save_int(7));
    EXPECT_FALSE(w.fail(Errc::external, "boom"));
    EXPECT_EQ(w.error().code, Errc::external);
    EXPECT_FALSE(w.fail(Errc::unencodable, "second"));
    EXPECT_EQ(w.error().detail, "boom") << "the first error is the one kept";
    ASSERT_TRUE(w.begin(0));
    EXPECT_EQ(w.size(), 0u);
    EXPECT_FALSE(w.error());
    EXPECT_FALSE(w.bin());
    EXPECT_EQ(w.protocol(), 0);
}

TEST(WriterAtoms, RawWritesAndOpArguments) {
    Writer w;
    ASSERT_TRUE(w.begin(4));
    ASSERT_TRUE(w.write_op(Op::MARK));
    ASSERT_TRUE(w.write_op_u8(Op::PROTO, 4));
    ASSERT_TRUE(w.write_op_u32(Op::LONG_BINGET, 0x01020304));
    ASSERT_TRUE(w.write_op_u64(Op::FRAME, 0x0102030405060708ull));
    char* out = w.reserve(2);
    ASSERT_NE(out, nullptr);
    out[0] = 'x';
    out[1] = 'y';
    w.commit(2);
    EXPECT_EQ(bytes_of(w), "(\x80\x04j\x04\x03\x02\x01\x95\x08\x07\x06\x05\x04\x03\x02\x01xy"s);
}

} // namespace
} // namespace picklex
