// tests/core/test_opcodes.cpp: the opcode table against pickletools' own table.
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>

#include "golden.hpp"
#include "picklex/opcodes.hpp"

namespace picklex {
namespace {

// Spelled out here rather than taken from the core so a reordered enum cannot hide.
std::string arg_kind_name(ArgKind kind) {
    switch (kind) {
    case ArgKind::none: return "none";
    case ArgKind::uint1: return "uint1";
    case ArgKind::uint2: return "uint2";
    case ArgKind::int4: return "int4";
    case ArgKind::uint4: return "uint4";
    case ArgKind::uint8: return "uint8";
    case ArgKind::decimalnl_short: return "decimalnl_short";
    case ArgKind::decimalnl_long: return "decimalnl_long";
    case ArgKind::stringnl: return "stringnl";
    case ArgKind::stringnl_noescape: return "stringnl_noescape";
    case ArgKind::stringnl_noescape_pair: return "stringnl_noescape_pair";
    case ArgKind::string1: return "string1";
    case ArgKind::string4: return "string4";
    case ArgKind::bytes1: return "bytes1";
    case ArgKind::bytes4: return "bytes4";
    case ArgKind::bytes8: return "bytes8";
    case ArgKind::bytearray8: return "bytearray8";
    case ArgKind::unicodestringnl: return "unicodestringnl";
    case ArgKind::unicodestring1: return "unicodestring1";
    case ArgKind::unicodestring4: return "unicodestring4";
    case ArgKind::unicodestring8: return "unicodestring8";
    case ArgKind::floatnl: return "floatnl";
    case ArgKind::float8: return "float8";
    case ArgKind::long1: return "long1";
    case ArgKind::long4: return "long4";
    }
    return "<unnamed ArgKind>";
}

struct Expected {
    std::string name;
    int code;
    std::string arg;
    int protocol;
    std::string before;
    std::string after;
};

std::map<int, Expected> pickletools_table() {
    std::map<int, Expected> table;
    for (const auto& f : test::read_golden("pickletools_opcodes.txt")) {
        const int code = std::stoi(f.at(1), nullptr, 16);
        table[code] = {f.at(0), code, f.at(2), std::stoi(f.at(3)), f.at(4), f.at(5)};
    }
    return table;
}

TEST(Opcodes, CodesAndNamesAreUnique) {
    std::set<int> codes;
    std::set<std::string_view> names;
    for (const OpInfo& info : kOpcodes) {
        EXPECT_TRUE(codes.insert(static_cast<int>(info.op)).second) << info.name;
        EXPECT_TRUE(names.insert(info.name).second) << info.name;
    }
    EXPECT_EQ(codes.size(), kOpcodeCount);
}

TEST(Opcodes, TableMatchesPickletools) {
    const auto expected = pickletools_table();
    ASSERT_EQ(kOpcodeCount, expected.size()) << "opcode count differs from pickletools";
    for (const OpInfo& info : kOpcodes) {
        const int code = static_cast<int>(info.op);
        SCOPED_TRACE(std::string(info.name));
        auto it = expected.find(code);
        ASSERT_NE(it, expected.end()) << "code 0x" << std::hex << code << " not in pickletools";
        const Expected& e = it->second;
        EXPECT_EQ(info.name, e.name);
        EXPECT_EQ(arg_kind_name(info.arg), e.arg);
        EXPECT_EQ(static_cast<int>(info.protocol), e.protocol);
        EXPECT_EQ(info.stack_before, e.before);
        EXPECT_EQ(info.stack_after, e.after);
    }
}

TEST(Opcodes, LookupByByteCoversExactlyTheTable) {
    const auto expected = pickletools_table();
    for (int byte = 0; byte < 256; ++byte) {
        const OpInfo* info = op_info(static_cast<std::uint8_t>(byte));
        auto it = expected.find(byte);
        if (it == expected.end()) {
            EXPECT_EQ(info, nullptr) << "byte 0x" << std::hex << byte;
            EXPECT_EQ(op_name(static_cast<std::uint8_t>(byte)), "<unknown>");
        } else {
            ASSERT_NE(info, nullptr) << it->second.name;
            EXPECT_EQ(static_cast<int>(info->op), byte);
            EXPECT_EQ(info->name, it->second.name);
            EXPECT_EQ(op_name(static_cast<std::uint8_t>(byte)), it->second.name);
        }
    }
}

TEST(Opcodes, LookupByEnumReturnsItsOwnRow) {
    for (const OpInfo& info : kOpcodes) {
        EXPECT_EQ(&op_info(info.op), &info) << info.name;
        EXPECT_EQ(op_info(info.op).name, info.name);
    }
}

TEST(Opcodes, IsUsableAtCompileTime) {
    static_assert(op_info(Op::STOP).name == "STOP");
    static_assert(op_info(static_cast<std::uint8_t>('.'))->op == Op::STOP);
    static_assert(op_name(static_cast<std::uint8_t>(0xff)) == "<unknown>");
    static_assert(static_cast<std::uint8_t>(Op::FRAME) == 0x95);
    static_assert(kHighestProtocol == 5);
    SUCCEED();
}

TEST(Opcodes, ProtocolsStayWithinRange) {
    int highest = 0;
    for (const OpInfo& info : kOpcodes) {
        EXPECT_LE(info.protocol, kHighestProtocol) << info.name;
        highest = std::max<int>(highest, info.protocol);
    }
    EXPECT_EQ(highest, kHighestProtocol);
}

TEST(Opcodes, WireConstantsMatchCPythonPickler) {
    EXPECT_EQ(wire::kBatchSize, 1000u);
    EXPECT_EQ(wire::kFrameSizeTarget, 64u * 1024u);
    EXPECT_EQ(wire::kFrameSizeMin, 4u);
    EXPECT_EQ(wire::kFrameHeaderSize, 9u);
}

} // namespace
} // namespace picklex
