// tests/core/test_error.cpp: error codes and the messages users see.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "picklex/error.hpp"

namespace picklex {
namespace {

TEST(Error, EveryCodeHasADistinctName) {
    std::set<std::string_view> names;
    for (int code = 0; code <= static_cast<int>(Errc::external); ++code) {
        const std::string_view name = errc_name(static_cast<Errc>(code));
        EXPECT_NE(name, "unknown") << "code " << code;
        EXPECT_TRUE(names.insert(name).second) << name;
    }
    EXPECT_EQ(errc_name(Errc::ok), "ok");
    EXPECT_EQ(errc_name(Errc::truncated), "truncated");
}

TEST(Error, DefaultIsNoError) {
    Error e;
    EXPECT_FALSE(e);
    EXPECT_EQ(e.opcode, -1);
}

TEST(Error, MessageNamesOpcodeAndOffset) {
    Error e{Errc::truncated, 'X', 17, "pickle data was truncated"};
    EXPECT_TRUE(e);
    EXPECT_EQ(e.message(), "pickle data was truncated (at opcode BINUNICODE, offset 17)");
}

TEST(Error, MessageFallsBackToTheCodeName) {
    Error e{Errc::memo_missing, -1, 0, ""};
    EXPECT_EQ(e.message(), "memo_missing");
    Error unknown{Errc::bad_opcode, 0xff, 3, "invalid load key, '\\xff'."};
    EXPECT_EQ(unknown.message(), "invalid load key, '\\xff'. (at opcode <unknown>, offset 3)");
}

} // namespace
} // namespace picklex
