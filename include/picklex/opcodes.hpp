// include/picklex/opcodes.hpp: the pickle wire format in one table.
//
// Every opcode value, name, argument kind, protocol and stack effect is written once, in
// PICKLEX_OPCODE_TABLE. The encoder, the decoder, the disassembler and the scanner all read
// it; nothing else in the project spells an opcode byte. Names follow pickletools.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace picklex {

/// How an opcode's inline argument is encoded in the stream (pickletools' ArgumentDescriptor).
enum class ArgKind : std::uint8_t {
    none,                   ///< no argument
    uint1,                  ///< 1-byte unsigned
    uint2,                  ///< 2-byte little-endian unsigned
    int4,                   ///< 4-byte little-endian signed
    uint4,                  ///< 4-byte little-endian unsigned
    uint8,                  ///< 8-byte little-endian unsigned
    decimalnl_short,        ///< decimal digits then '\n' ("00"/"01" mean False/True for INT)
    decimalnl_long,         ///< decimal digits, optional trailing 'L', then '\n'
    stringnl,               ///< Python repr of a string literal then '\n'
    stringnl_noescape,      ///< raw text then '\n'
    stringnl_noescape_pair, ///< two raw text lines (module, name)
    string1,                ///< 1-byte length + bytes
    string4,                ///< 4-byte signed length + bytes
    bytes1,                 ///< 1-byte length + bytes
    bytes4,                 ///< 4-byte unsigned length + bytes
    bytes8,                 ///< 8-byte unsigned length + bytes
    bytearray8,             ///< 8-byte unsigned length + bytes
    unicodestringnl,        ///< raw-unicode-escape text then '\n'
    unicodestring1,         ///< 1-byte length + UTF-8
    unicodestring4,         ///< 4-byte length + UTF-8
    unicodestring8,         ///< 8-byte length + UTF-8
    floatnl,                ///< repr of a float then '\n'
    float8,                 ///< 8-byte big-endian IEEE-754 double
    long1,                  ///< 1-byte length + little-endian two's complement
    long4,                  ///< 4-byte signed length + little-endian two's complement
};

// X(name, byte, argument kind, protocol, stack before, stack after)
#define PICKLEX_OPCODE_TABLE(X)                                                                    \
    /* Protocol 0 and 1 */                                                                         \
    X(MARK, '(', none, 0, "", "mark")                                                              \
    X(STOP, '.', none, 0, "any", "")                                                               \
    X(POP, '0', none, 0, "any", "")                                                                \
    X(POP_MARK, '1', none, 1, "mark stackslice", "")                                               \
    X(DUP, '2', none, 0, "any", "any any")                                                         \
    X(FLOAT, 'F', floatnl, 0, "", "float")                                                         \
    X(INT, 'I', decimalnl_short, 0, "", "int_or_bool")                                             \
    X(BININT, 'J', int4, 1, "", "int")                                                             \
    X(BININT1, 'K', uint1, 1, "", "int")                                                           \
    X(LONG, 'L', decimalnl_long, 0, "", "int")                                                     \
    X(BININT2, 'M', uint2, 1, "", "int")                                                           \
    X(NONE, 'N', none, 0, "", "None")                                                              \
    X(PERSID, 'P', stringnl_noescape, 0, "", "any")                                                \
    X(BINPERSID, 'Q', none, 1, "any", "any")                                                       \
    X(REDUCE, 'R', none, 0, "any any", "any")                                                      \
    X(STRING, 'S', stringnl, 0, "", "bytes_or_str")                                                \
    X(BINSTRING, 'T', string4, 1, "", "bytes_or_str")                                              \
    X(SHORT_BINSTRING, 'U', string1, 1, "", "bytes_or_str")                                        \
    X(UNICODE, 'V', unicodestringnl, 0, "", "str")                                                 \
    X(BINUNICODE, 'X', unicodestring4, 1, "", "str")                                               \
    X(APPEND, 'a', none, 0, "list any", "list")                                                    \
    X(BUILD, 'b', none, 0, "any any", "any")                                                       \
    X(GLOBAL, 'c', stringnl_noescape_pair, 0, "", "any")                                           \
    X(DICT, 'd', none, 0, "mark stackslice", "dict")                                               \
    X(EMPTY_DICT, '}', none, 1, "", "dict")                                                        \
    X(APPENDS, 'e', none, 1, "list mark stackslice", "list")                                       \
    X(GET, 'g', decimalnl_short, 0, "", "any")                                                     \
    X(BINGET, 'h', uint1, 1, "", "any")                                                            \
    X(INST, 'i', stringnl_noescape_pair, 0, "mark stackslice", "any")                              \
    X(LONG_BINGET, 'j', uint4, 1, "", "any")                                                       \
    X(LIST, 'l', none, 0, "mark stackslice", "list")                                               \
    X(EMPTY_LIST, ']', none, 1, "", "list")                                                        \
    X(OBJ, 'o', none, 1, "mark any stackslice", "any")                                             \
    X(PUT, 'p', decimalnl_short, 0, "", "")                                                        \
    X(BINPUT, 'q', uint1, 1, "", "")                                                               \
    X(LONG_BINPUT, 'r', uint4, 1, "", "")                                                          \
    X(SETITEM, 's', none, 0, "dict any any", "dict")                                               \
    X(TUPLE, 't', none, 0, "mark stackslice", "tuple")                                             \
    X(EMPTY_TUPLE, ')', none, 1, "", "tuple")                                                      \
    X(SETITEMS, 'u', none, 1, "dict mark stackslice", "dict")                                      \
    X(BINFLOAT, 'G', float8, 1, "", "float")                                                       \
    /* Protocol 2 */                                                                               \
    X(PROTO, '\x80', uint1, 2, "", "")                                                             \
    X(NEWOBJ, '\x81', none, 2, "any any", "any")                                                   \
    X(EXT1, '\x82', uint1, 2, "", "any")                                                           \
    X(EXT2, '\x83', uint2, 2, "", "any")                                                           \
    X(EXT4, '\x84', int4, 2, "", "any")                                                            \
    X(TUPLE1, '\x85', none, 2, "any", "tuple")                                                     \
    X(TUPLE2, '\x86', none, 2, "any any", "tuple")                                                 \
    X(TUPLE3, '\x87', none, 2, "any any any", "tuple")                                             \
    X(NEWTRUE, '\x88', none, 2, "", "bool")                                                        \
    X(NEWFALSE, '\x89', none, 2, "", "bool")                                                       \
    X(LONG1, '\x8a', long1, 2, "", "int")                                                          \
    X(LONG4, '\x8b', long4, 2, "", "int")                                                          \
    /* Protocol 3 */                                                                               \
    X(BINBYTES, 'B', bytes4, 3, "", "bytes")                                                       \
    X(SHORT_BINBYTES, 'C', bytes1, 3, "", "bytes")                                                 \
    /* Protocol 4 */                                                                               \
    X(SHORT_BINUNICODE, '\x8c', unicodestring1, 4, "", "str")                                      \
    X(BINUNICODE8, '\x8d', unicodestring8, 4, "", "str")                                           \
    X(BINBYTES8, '\x8e', bytes8, 4, "", "bytes")                                                   \
    X(EMPTY_SET, '\x8f', none, 4, "", "set")                                                       \
    X(ADDITEMS, '\x90', none, 4, "set mark stackslice", "set")                                     \
    X(FROZENSET, '\x91', none, 4, "mark stackslice", "frozenset")                                  \
    X(NEWOBJ_EX, '\x92', none, 4, "any any any", "any")                                            \
    X(STACK_GLOBAL, '\x93', none, 4, "str str", "any")                                             \
    X(MEMOIZE, '\x94', none, 4, "any", "any")                                                      \
    X(FRAME, '\x95', uint8, 4, "", "")                                                             \
    /* Protocol 5 */                                                                               \
    X(BYTEARRAY8, '\x96', bytearray8, 5, "", "bytearray")                                          \
    X(NEXT_BUFFER, '\x97', none, 5, "", "buffer")                                                  \
    X(READONLY_BUFFER, '\x98', none, 5, "buffer", "buffer")

/// Every pickle opcode, by its pickletools name; the value is the byte on the wire.
enum class Op : std::uint8_t {
#define PICKLEX_X(name, code, arg, proto, before, after) name = static_cast<std::uint8_t>(code),
    PICKLEX_OPCODE_TABLE(PICKLEX_X)
#undef PICKLEX_X
};

/// Static description of one opcode.
struct OpInfo {
    Op op;                          ///< the opcode
    std::string_view name;          ///< pickletools name, e.g. "SHORT_BINUNICODE"
    ArgKind arg;                    ///< inline argument encoding
    std::uint8_t protocol;          ///< first protocol that defines it
    std::string_view stack_before;  ///< space-separated stack items consumed
    std::string_view stack_after;   ///< space-separated stack items produced
};

/// All opcodes in table order.
inline constexpr OpInfo kOpcodes[] = {
#define PICKLEX_X(name, code, arg, proto, before, after)                                           \
    OpInfo{Op::name, #name, ArgKind::arg, proto, before, after},
    PICKLEX_OPCODE_TABLE(PICKLEX_X)
#undef PICKLEX_X
};

inline constexpr std::size_t kOpcodeCount = sizeof(kOpcodes) / sizeof(kOpcodes[0]);

/// Highest protocol this table knows.
inline constexpr int kHighestProtocol = 5;

namespace detail {
constexpr std::array<const OpInfo*, 256> make_op_index() {
    std::array<const OpInfo*, 256> index{};
    for (const OpInfo& info : kOpcodes) index[static_cast<std::uint8_t>(info.op)] = &info;
    return index;
}
inline constexpr std::array<const OpInfo*, 256> kOpIndex = make_op_index();
} // namespace detail

/// The description of a byte read from a stream, or nullptr if it is not an opcode.
constexpr const OpInfo* op_info(std::uint8_t byte) noexcept { return detail::kOpIndex[byte]; }

/// The description of a known opcode.
constexpr const OpInfo& op_info(Op op) noexcept { return *detail::kOpIndex[static_cast<std::uint8_t>(op)]; }

/// The pickletools name of a byte, or "<unknown>".
constexpr std::string_view op_name(std::uint8_t byte) noexcept {
    const OpInfo* info = op_info(byte);
    return info ? info->name : std::string_view("<unknown>");
}

/// Tunables shared by the encoders; they shape the bytes, so they match CPython's pickler.
namespace wire {
inline constexpr std::size_t kBatchSize = 1000;              ///< items per APPENDS/SETITEMS/ADDITEMS
inline constexpr std::size_t kFrameSizeTarget = 64 * 1024;   ///< commit a frame at this size
inline constexpr std::size_t kFrameSizeMin = 4;              ///< smaller frames are unframed
inline constexpr std::size_t kFrameHeaderSize = 9;           ///< FRAME + uint8 length
} // namespace wire

} // namespace picklex
