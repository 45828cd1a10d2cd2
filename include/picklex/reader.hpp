// include/picklex/reader.hpp: the pickle decoder's input side.
//
// Reader<Source, Handler> runs the decode loop: it reads each opcode byte, decodes the inline
// argument with every bounds check (a length is checked against the bytes the source can
// actually deliver before anything is built from it), and calls one Handler method per
// opcode. It knows nothing of objects or stacks; StackMachine<Ops> (stack_machine.hpp) is
// the usual Handler. Templates rather than virtual calls, so the whole loop inlines into one
// switch.
//
// ---- Source ----
// A Source hands out the pickle through a window of contiguous memory:
//
//   const char* next;   // first unread byte of the window
//   const char* end;    // one past the window
//   bool fill(std::size_t n);   // called when end - next < n: make at least n bytes readable
//                               // at `next` (the window may move; pointers into the old one
//                               // die). False if the input ends first or reading failed.
//   const char* fill_line();    // called when [next, end) holds no '\n': extend the window
//                               // through the next '\n' and return its address, or nullptr.
//   bool fill_payload(std::size_t n); // optional: fill() for bytes/bytearray payloads,
//                               // which may keep the rest of the window (CPython's readinto)
//   bool finish();              // after STOP: settle the underlying stream (e.g. consume
//                               // what was only peeked at). False on failure.
//   std::size_t offset() const; // stream offset of `next`
//   Errc failure() const;       // after a false/nullptr: Errc::truncated when the input
//                               // ended, Errc::external when the stream itself failed
//                               // (the front has the details), or Errc::out_of_memory.
//
// MemorySource below parses a buffer in place (zero copy). A stream source (the CPython
// front's file reader) refills the window from the stream, never reads past the end of the
// pickle, and reads claimed lengths in bounded steps so a forged 2**60-byte length costs no
// more memory than the stream really delivers.
//
// ---- Handler ----
// Every method returns bool; false means failure, and the handler must then have filled
// `error()` with a code and detail (or Errc::external with the details held elsewhere). The
// Reader adds the opcode and its offset. Pointers passed in are valid only during the call.
//
//   Error& error();
//   bool on_proto(int protocol);                  // PROTO (the Reader rejected > 5)
//   bool on_stop();                               // STOP
//   bool on_mark(); on_pop(); on_pop_mark(); on_dup();
//   bool on_none(); on_bool(bool);                // NONE, NEWTRUE/NEWFALSE, INT "00"/"01"
//   bool on_int(std::int64_t);                    // BININT*, INT and LONG1/LONG4 that fit
//   bool on_int_text(const char* cstr, Op op);    // INT that overflowed a C long (op INT), or
//                                                 // LONG's digits with the 'L' cut (op LONG):
//                                                 // parse as Python's int(text, 0)
//   bool on_long_bytes(const char*, std::size_t); // LONG1/LONG4 of more than 8 bytes
//   bool on_float(double);                        // BINFLOAT
//   bool on_float_text(const char* cstr);         // FLOAT: the line, '\n' included
//   bool on_str_utf8(const char*, std::size_t);   // SHORT_BINUNICODE, BINUNICODE, BINUNICODE8
//   bool on_str_raw_unicode_escape(const char*, std::size_t); // UNICODE ('\n' cut)
//   bool on_py2_str(const char*, std::size_t);    // SHORT_BINSTRING, BINSTRING
//   bool on_py2_str_escaped(const char*, std::size_t); // STRING, quotes cut, escapes intact
//   bool on_bytes(const char*, std::size_t);      // SHORT_BINBYTES, BINBYTES, BINBYTES8
//   bool on_bytearray(const char*, std::size_t);  // BYTEARRAY8
//   bool on_next_buffer(); on_readonly_buffer();
//   bool on_tuple_n(int n);                       // EMPTY_TUPLE (0), TUPLE1..TUPLE3
//   bool on_tuple(); on_list(); on_dict(); on_frozenset();   // TUPLE, LIST, DICT, FROZENSET
//   bool on_empty_list(); on_empty_dict(); on_empty_set();
//   bool on_append(); on_appends(); on_setitem(); on_setitems(); on_additems();
//   bool on_global(std::string_view module, std::string_view name); // GLOBAL (lines, no '\n')
//   bool on_inst(std::string_view module, std::string_view name);   // INST
//   bool check_global_module(std::string_view module, Op op); // optional; asked only when a
//                                                 // GLOBAL/INST name line is missing: is the
//                                                 // module line valid? (CPython's check order)
//   bool on_stack_global();
//   bool on_ext(std::int32_t code);               // EXT1/EXT2/EXT4, code > 0
//   bool on_reduce(); on_build(); on_newobj(); on_newobj_ex(); on_obj();
//   bool on_persid(std::string_view pid);         // PERSID (line, no '\n')
//   bool on_binpersid();
//   bool on_get(std::uint32_t index);             // BINGET, LONG_BINGET
//   bool on_put(std::uint32_t index);             // BINPUT, LONG_BINPUT
//   bool on_get_text(std::string_view line);      // GET, PUT: the decimal key line, '\n'
//   bool on_put_text(std::string_view line);      // included, NUL-terminated; CPython checks
//                                                 // the stack before it parses a PUT key
//   bool on_memoize();
#pragma once

#include <cerrno>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include <array>

#include "picklex/detail/decode_buffer.hpp"
#include "picklex/detail/decode_text.hpp"
#include "picklex/detail/endian.hpp"
#include "picklex/error.hpp"
#include "picklex/opcodes.hpp"

namespace picklex {

/// The largest length an 8-byte length field may claim (PY_SSIZE_T_MAX on 64-bit hosts).
inline constexpr std::uint64_t kMaxPayloadSize = static_cast<std::uint64_t>(PTRDIFF_MAX);
/// Bytes of object header a payload of kMaxPayloadSize leaves no room for.
inline constexpr std::uint64_t kObjectHeaderReserve = 32;

/// A pickle held in memory, parsed in place.
class MemorySource {
  public:
    MemorySource(const void* data, std::size_t size) noexcept
        : next(static_cast<const char*>(data)), end(next + size), begin_(next) {}

    const char* next;
    const char* end;

    /// The window never moves: a pointer into it stays valid (see Reader's kFixedWindow).
    static constexpr bool kFixedWindow = true;

    bool fill(std::size_t) noexcept { return false; }
    const char* fill_line() noexcept { return nullptr; }
    bool finish() noexcept { return true; }
    std::size_t offset() const noexcept { return offset_of(next); }
    std::size_t offset_of(const char* p) const noexcept { return static_cast<std::size_t>(p - begin_); }
    Errc failure() const noexcept { return Errc::truncated; }

  private:
    const char* begin_;
};

/// Decodes one pickle (up to and including STOP) from `Source` into `Handler`.
template <class Source, class Handler> class Reader {
  public:
    Reader(Source& source, Handler& handler) noexcept : src_(source), h_(handler) {}

    /// Decode until STOP. On failure, handler.error() holds the code, opcode and offset.
    bool run();

  private:
    /// A source whose window never moves lets the loop remember where each opcode starts as
    /// a pointer, and work out its offset and byte only when an error needs them.
    static constexpr bool kFixedWindow = requires { requires Source::kFixedWindow; };

    /// Settle op_ and op_offset_ for an error report.
    void locate() noexcept {
        if constexpr (kFixedWindow) {
            if (op_start_) {
                op_ = static_cast<std::uint8_t>(*op_start_);
                op_offset_ = src_.offset_of(op_start_);
            }
        }
    }
    PICKLEX_DECODE_COLD bool fail(Errc code, std::string detail);
    PICKLEX_DECODE_COLD bool fail_handler();
    PICKLEX_DECODE_COLD bool fail_source(bool at_opcode_start);
    PICKLEX_DECODE_COLD bool fail_too_large(const char* what);

    /// `n` bytes of argument, or nullptr (after which fail_source() explains).
    PICKLEX_DECODE_INLINE const char* take(std::size_t n) {
        if (static_cast<std::size_t>(src_.end - src_.next) < n) [[unlikely]] {
            if (!src_.fill(n)) return nullptr;
        }
        const char* p = src_.next;
        src_.next += n;
        return p;
    }
    /// `n` bytes of a bytes/bytearray payload. A stream source may carry what is left of
    /// its window over into the payload (Source::fill_payload, optional), as CPython does for
    /// exactly these opcodes.
    PICKLEX_DECODE_INLINE const char* take_payload(std::size_t n) {
        if (static_cast<std::size_t>(src_.end - src_.next) < n || (n == 0 && src_.next == src_.end))
            [[unlikely]] {
            bool ok;
            if constexpr (requires { src_.fill_payload(n); }) ok = src_.fill_payload(n);
            else ok = src_.fill(n);
            if (!ok) return nullptr;
        }
        const char* p = src_.next;
        src_.next += n;
        return p;
    }
    /// The next line, '\n' included.
    bool take_line(std::string_view& line);
    /// The next line copied to scratch storage and NUL-terminated, '\n' included; at least
    /// `min_size` bytes long (shorter lines are truncation, as in CPython).
    const char* take_line_cstr(std::size_t min_size, std::size_t& size);
    /// A GLOBAL/INST pair of lines, '\n' cut. The first is copied to scratch storage.
    bool take_line_pair(std::string_view& first, std::string_view& second, Op op);

    bool load_int();
    bool load_long();
    bool load_counted_long(std::size_t width);
    bool load_string();
    bool load_ext(std::int32_t code);

    Source& src_;
    Handler& h_;
    int op_ = -1;                       // opcode being decoded (see locate())
    std::size_t op_offset_ = 0;         // its offset
    const char* op_start_ = nullptr;    // where it starts, for a fixed window
    detail::DecodeBuffer<char> scratch_; // copies of text lines
};

// ---------------------------------------------------------------------------------------------

template <class Source, class Handler>
bool Reader<Source, Handler>::fail(Errc code, std::string detail) {
    locate();
    Error& e = h_.error();
    e.code = code;
    e.opcode = op_;
    e.offset = op_offset_;
    e.detail = std::move(detail);
    return false;
}

template <class Source, class Handler> bool Reader<Source, Handler>::fail_handler() {
    locate();
    Error& e = h_.error();
    if (e.code == Errc::ok) e.code = Errc::external;
    e.opcode = op_;
    e.offset = op_offset_;
    return false;
}

template <class Source, class Handler>
bool Reader<Source, Handler>::fail_source(bool at_opcode_start) {
    locate();
    const Errc code = src_.failure();
    if (code == Errc::truncated) {
        // Running out where an opcode should start is EOF; inside an opcode, truncation.
        if (at_opcode_start) {
            op_ = -1;
            return fail(Errc::empty_input, "Ran out of input");
        }
        return fail(Errc::truncated, "pickle data was truncated");
    }
    if (code == Errc::out_of_memory) return fail(code, "out of memory");
    return fail(code, {});
}

template <class Source, class Handler>
bool Reader<Source, Handler>::fail_too_large(const char* what) {
    std::string detail = what;
    detail += " exceeds system's maximum size of ";
    detail += std::to_string(kMaxPayloadSize);
    detail += " bytes";
    return fail(Errc::too_large, std::move(detail));
}

template <class Source, class Handler>
bool Reader<Source, Handler>::take_line(std::string_view& line) {
    const char* nl = nullptr;
    if (src_.next != src_.end)
        nl = static_cast<const char*>(std::memchr(src_.next, '\n', src_.end - src_.next));
    if (!nl) {
        nl = src_.fill_line();
        if (!nl) return false;
    }
    line = std::string_view(src_.next, static_cast<std::size_t>(nl + 1 - src_.next));
    src_.next = nl + 1;
    return true;
}

template <class Source, class Handler>
const char* Reader<Source, Handler>::take_line_cstr(std::size_t min_size, std::size_t& size) {
    std::string_view line;
    if (!take_line(line)) {
        fail_source(false);
        return nullptr;
    }
    if (line.size() < min_size) {
        fail(Errc::truncated, "pickle data was truncated");
        return nullptr;
    }
    scratch_.clear();
    if (!scratch_.append(line.data(), line.size()) || !scratch_.push_back('\0')) {
        fail(Errc::out_of_memory, "out of memory");
        return nullptr;
    }
    size = line.size();
    return scratch_.data();
}

template <class Source, class Handler>
bool Reader<Source, Handler>::take_line_pair(std::string_view& first, std::string_view& second,
                                             Op op) {
    std::size_t size = 0;
    const char* text = take_line_cstr(2, size);
    if (!text) return false;
    first = std::string_view(text, size - 1);
    std::string_view line;
    const bool got = take_line(line);
    if (got && line.size() >= 2) {
        second = line.substr(0, line.size() - 1);
        return true;
    }
    // CPython decodes the module line before it reads the name line: a bad module name is
    // reported ahead of a missing name.
    if constexpr (requires { h_.check_global_module(first, Op::GLOBAL); }) {
        if ((got || src_.failure() == Errc::truncated) &&
            !h_.check_global_module(first, op))
            return fail_handler();
    }
    return got ? fail(Errc::truncated, "pickle data was truncated") : fail_source(false);
}

template <class Source, class Handler> bool Reader<Source, Handler>::load_int() {
    std::size_t size = 0;
    const char* text = take_line_cstr(2, size);
    if (!text) return false;
    // CPython reads INT with strtol(base 0), so "010" is octal 8 and "0x10" is 16; a line of
    // exactly two characters holding 0 or 1 ("00", "01") is the protocol-0 spelling of bool.
    errno = 0;
    char* stop = nullptr;
    const long value = std::strtol(text, &stop, 0);
    if (errno != 0 || (*stop != '\n' && *stop != '\0'))
        return h_.on_int_text(text, Op::INT) || fail_handler();
    if (size == 3 && (value == 0 || value == 1)) return h_.on_bool(value == 1) || fail_handler();
    return h_.on_int(value) || fail_handler();
}

template <class Source, class Handler> bool Reader<Source, Handler>::load_long() {
    std::size_t size = 0;
    const char* text = take_line_cstr(2, size);
    if (!text) return false;
    // Python 2 wrote "123L"; the 'L' is optional since Python 3.0.0 wrote none.
    if (text[size - 2] == 'L') scratch_[size - 2] = '\0';
    return h_.on_int_text(text, Op::LONG) || fail_handler();
}

template <class Source, class Handler>
bool Reader<Source, Handler>::load_counted_long(std::size_t width) {
    const char* p = take(width);
    if (!p) return fail_source(false);
    std::int64_t count = width == 1 ? static_cast<std::uint8_t>(*p)
                                    : static_cast<std::int32_t>(detail::load_le32(p));
    if (count < 0) return fail(Errc::negative_length, "LONG pickle has negative byte count");
    if (count == 0) return h_.on_int(0) || fail_handler();
    const char* bytes = take(static_cast<std::size_t>(count));
    if (!bytes) return fail_source(false);
    if (count <= 8) {
        // Little-endian two's complement of at most 64 bits: sign-extend into an int64.
        std::uint64_t raw = 0;
        for (std::int64_t i = count - 1; i >= 0; --i)
            raw = (raw << 8) | static_cast<std::uint8_t>(bytes[i]);
        if (count < 8 && (raw >> (8 * count - 1)) & 1) raw |= ~std::uint64_t{0} << (8 * count);
        return h_.on_int(static_cast<std::int64_t>(raw)) || fail_handler();
    }
    return h_.on_long_bytes(bytes, static_cast<std::size_t>(count)) || fail_handler();
}

template <class Source, class Handler> bool Reader<Source, Handler>::load_string() {
    std::size_t size = 0;
    const char* text = take_line_cstr(1, size);
    if (!text) return false;
    std::size_t len = size - 1; // without the '\n'
    if (len < 2 || text[0] != text[len - 1] || (text[0] != '\'' && text[0] != '"'))
        return fail(Errc::bad_argument, "the STRING opcode argument must be quoted");
    return h_.on_py2_str_escaped(text + 1, len - 2) || fail_handler();
}

// The decode loop. With GCC and Clang every opcode's code ends in its own indirect jump to
// the next opcode's (computed goto), which the branch predictor tells apart far better than
// the one shared jump of a switch; elsewhere the same bodies form a switch.
#ifndef PICKLEX_COMPUTED_GOTO
#if defined(__GNUC__) || defined(__clang__)
#define PICKLEX_COMPUTED_GOTO 1
#else
#define PICKLEX_COMPUTED_GOTO 0
#endif
#endif

namespace detail {
/// Position of each byte's opcode in PICKLEX_OPCODE_TABLE plus one; 0 for a non-opcode.
constexpr std::array<std::uint8_t, 256> make_dispatch_index() {
    std::array<std::uint8_t, 256> index{};
    for (std::size_t i = 0; i < kOpcodeCount; ++i)
        index[static_cast<std::uint8_t>(kOpcodes[i].op)] = static_cast<std::uint8_t>(i + 1);
    return index;
}
inline constexpr std::array<std::uint8_t, 256> kDispatchIndex = make_dispatch_index();
} // namespace detail

template <class Source, class Handler> bool Reader<Source, Handler>::load_ext(std::int32_t code) {
    if (code <= 0) return fail(Errc::bad_argument, "EXT specifies code <= 0");
    return h_.on_ext(code) || fail_handler();
}

template <class Source, class Handler> bool Reader<Source, Handler>::run() {
    std::uint8_t op = 0;
#if PICKLEX_COMPUTED_GOTO
#define PICKLEX_X(name, code, arg, proto, before, after) &&op_##name,
    static const void* const kLabels[] = {&&not_an_opcode, PICKLEX_OPCODE_TABLE(PICKLEX_X)};
#undef PICKLEX_X
#define PICKLEX_OP(name) op_##name:
#define PICKLEX_JUMP() goto* kLabels[detail::kDispatchIndex[op]]
#else
#define PICKLEX_OP(name) case Op::name:
#define PICKLEX_JUMP() goto dispatch
#endif
// Start the next opcode: note where it begins, read its byte, jump to its code.
#define PICKLEX_NEXT()                                                                             \
    do {                                                                                           \
        if constexpr (kFixedWindow) op_start_ = src_.next;                                         \
        else op_offset_ = src_.offset();                                                           \
        if (src_.next == src_.end) [[unlikely]]                                                    \
            goto refill;                                                                           \
        op = static_cast<std::uint8_t>(*src_.next++);                                              \
        if constexpr (!kFixedWindow) op_ = op;                                                     \
        PICKLEX_JUMP();                                                                            \
    } while (0)
// Each opcode either goes on to the next or returns false with the error recorded.
#define PICKLEX_CALL(expr)                                                                         \
    do {                                                                                           \
        if (!(expr)) [[unlikely]]                                                                  \
            return fail_handler();                                                                 \
        PICKLEX_NEXT();                                                                            \
    } while (0)
// A step of the Reader's own that records its error itself.
#define PICKLEX_STEP(expr)                                                                         \
    do {                                                                                           \
        if (!(expr)) [[unlikely]]                                                                  \
            return false;                                                                          \
        PICKLEX_NEXT();                                                                            \
    } while (0)
#define PICKLEX_TAKE(var, n)                                                                       \
    const char* var = take(n);                                                                     \
    if (!var) [[unlikely]]                                                                         \
        return fail_source(false)
// Bytes payloads: CPython asks the source even for zero bytes, so an empty payload at the
// very end of the input is truncation rather than a clean EOF at the next opcode.
#define PICKLEX_TAKE_PAYLOAD(var, n)                                                               \
    const char* var = take_payload(n);                                                             \
    if (!var) [[unlikely]]                                                                         \
        return fail_source(false)

    PICKLEX_NEXT();
#if !PICKLEX_COMPUTED_GOTO
dispatch:
    switch (static_cast<Op>(op)) {
#endif
        // ---- atoms ----
        PICKLEX_OP(NONE) PICKLEX_CALL(h_.on_none());
        PICKLEX_OP(NEWTRUE) PICKLEX_CALL(h_.on_bool(true));
        PICKLEX_OP(NEWFALSE) PICKLEX_CALL(h_.on_bool(false));
        PICKLEX_OP(BININT1) {
            PICKLEX_TAKE(p, 1);
            PICKLEX_CALL(h_.on_int(static_cast<std::uint8_t>(*p)));
        }
        PICKLEX_OP(BININT2) {
            PICKLEX_TAKE(p, 2);
            PICKLEX_CALL(h_.on_int(detail::load_le16(p)));
        }
        PICKLEX_OP(BININT) {
            PICKLEX_TAKE(p, 4);
            PICKLEX_CALL(h_.on_int(static_cast<std::int32_t>(detail::load_le32(p))));
        }
        PICKLEX_OP(INT) PICKLEX_STEP(load_int());
        PICKLEX_OP(LONG) PICKLEX_STEP(load_long());
        PICKLEX_OP(LONG1) PICKLEX_STEP(load_counted_long(1));
        PICKLEX_OP(LONG4) PICKLEX_STEP(load_counted_long(4));
        PICKLEX_OP(BINFLOAT) {
            PICKLEX_TAKE(p, 8);
            const std::uint64_t bits = detail::load_be64(p);
            double value;
            std::memcpy(&value, &bits, sizeof value);
            PICKLEX_CALL(h_.on_float(value));
        }
        PICKLEX_OP(FLOAT) {
            std::size_t size = 0;
            const char* text = take_line_cstr(2, size);
            if (!text) return false;
            PICKLEX_CALL(h_.on_float_text(text));
        }

        // ---- strings and bytes ----
        PICKLEX_OP(SHORT_BINUNICODE) {
            PICKLEX_TAKE(p, 1);
            const std::size_t n = static_cast<std::uint8_t>(*p);
            PICKLEX_TAKE(s, n);
            PICKLEX_CALL(h_.on_str_utf8(s, n));
        }
        PICKLEX_OP(BINUNICODE) {
            PICKLEX_TAKE(p, 4);
            const std::size_t n = detail::load_le32(p);
            PICKLEX_TAKE(s, n);
            PICKLEX_CALL(h_.on_str_utf8(s, n));
        }
        PICKLEX_OP(BINUNICODE8) {
            PICKLEX_TAKE(p, 8);
            const std::uint64_t n = detail::load_le64(p);
            if (n > kMaxPayloadSize) return fail_too_large("BINUNICODE");
            PICKLEX_TAKE(s, n);
            PICKLEX_CALL(h_.on_str_utf8(s, n));
        }
        PICKLEX_OP(UNICODE) {
            std::string_view line;
            if (!take_line(line)) return fail_source(false);
            PICKLEX_CALL(h_.on_str_raw_unicode_escape(line.data(), line.size() - 1));
        }
        PICKLEX_OP(SHORT_BINSTRING) {
            PICKLEX_TAKE(p, 1);
            const std::size_t n = static_cast<std::uint8_t>(*p);
            PICKLEX_TAKE(s, n);
            PICKLEX_CALL(h_.on_py2_str(s, n));
        }
        PICKLEX_OP(BINSTRING) {
            PICKLEX_TAKE(p, 4);
            const std::size_t n = detail::load_le32(p);
            PICKLEX_TAKE(s, n);
            PICKLEX_CALL(h_.on_py2_str(s, n));
        }
        PICKLEX_OP(STRING) PICKLEX_STEP(load_string());
        PICKLEX_OP(SHORT_BINBYTES) {
            PICKLEX_TAKE(p, 1);
            const std::size_t n = static_cast<std::uint8_t>(*p);
            PICKLEX_TAKE_PAYLOAD(s, n);
            PICKLEX_CALL(h_.on_bytes(s, n));
        }
        PICKLEX_OP(BINBYTES) {
            PICKLEX_TAKE(p, 4);
            const std::size_t n = detail::load_le32(p);
            PICKLEX_TAKE_PAYLOAD(s, n);
            PICKLEX_CALL(h_.on_bytes(s, n));
        }
        PICKLEX_OP(BINBYTES8) {
            PICKLEX_TAKE(p, 8);
            const std::uint64_t n = detail::load_le64(p);
            if (n > kMaxPayloadSize) return fail_too_large("BINBYTES");
            // CPython allocates the object before reading and cannot fit a header next to
            // so many bytes; same error, without the allocation attempt.
            if (n > kMaxPayloadSize - kObjectHeaderReserve)
                return fail(Errc::too_large, "byte string is too large");
            PICKLEX_TAKE_PAYLOAD(s, n);
            PICKLEX_CALL(h_.on_bytes(s, n));
        }
        PICKLEX_OP(BYTEARRAY8) {
            PICKLEX_TAKE(p, 8);
            const std::uint64_t n = detail::load_le64(p);
            if (n > kMaxPayloadSize) return fail_too_large("BYTEARRAY8");
            PICKLEX_TAKE_PAYLOAD(s, n);
            PICKLEX_CALL(h_.on_bytearray(s, n));
        }
        PICKLEX_OP(NEXT_BUFFER) PICKLEX_CALL(h_.on_next_buffer());
        PICKLEX_OP(READONLY_BUFFER) PICKLEX_CALL(h_.on_readonly_buffer());

        // ---- containers ----
        PICKLEX_OP(EMPTY_TUPLE) PICKLEX_CALL(h_.on_tuple_n(0));
        PICKLEX_OP(TUPLE1) PICKLEX_CALL(h_.on_tuple_n(1));
        PICKLEX_OP(TUPLE2) PICKLEX_CALL(h_.on_tuple_n(2));
        PICKLEX_OP(TUPLE3) PICKLEX_CALL(h_.on_tuple_n(3));
        PICKLEX_OP(TUPLE) PICKLEX_CALL(h_.on_tuple());
        PICKLEX_OP(EMPTY_LIST) PICKLEX_CALL(h_.on_empty_list());
        PICKLEX_OP(LIST) PICKLEX_CALL(h_.on_list());
        PICKLEX_OP(EMPTY_DICT) PICKLEX_CALL(h_.on_empty_dict());
        PICKLEX_OP(DICT) PICKLEX_CALL(h_.on_dict());
        PICKLEX_OP(EMPTY_SET) PICKLEX_CALL(h_.on_empty_set());
        PICKLEX_OP(FROZENSET) PICKLEX_CALL(h_.on_frozenset());
        PICKLEX_OP(APPEND) PICKLEX_CALL(h_.on_append());
        PICKLEX_OP(APPENDS) PICKLEX_CALL(h_.on_appends());
        PICKLEX_OP(SETITEM) PICKLEX_CALL(h_.on_setitem());
        PICKLEX_OP(SETITEMS) PICKLEX_CALL(h_.on_setitems());
        PICKLEX_OP(ADDITEMS) PICKLEX_CALL(h_.on_additems());

        // ---- stack and memo ----
        PICKLEX_OP(MARK) PICKLEX_CALL(h_.on_mark());
        PICKLEX_OP(POP) PICKLEX_CALL(h_.on_pop());
        PICKLEX_OP(POP_MARK) PICKLEX_CALL(h_.on_pop_mark());
        PICKLEX_OP(DUP) PICKLEX_CALL(h_.on_dup());
        PICKLEX_OP(BINGET) {
            PICKLEX_TAKE(p, 1);
            PICKLEX_CALL(h_.on_get(static_cast<std::uint8_t>(*p)));
        }
        PICKLEX_OP(LONG_BINGET) {
            PICKLEX_TAKE(p, 4);
            PICKLEX_CALL(h_.on_get(detail::load_le32(p)));
        }
        PICKLEX_OP(GET) {
            std::size_t size = 0;
            const char* text = take_line_cstr(2, size);
            if (!text) return false;
            PICKLEX_CALL(h_.on_get_text(std::string_view(text, size)));
        }
        PICKLEX_OP(BINPUT) {
            PICKLEX_TAKE(p, 1);
            PICKLEX_CALL(h_.on_put(static_cast<std::uint8_t>(*p)));
        }
        PICKLEX_OP(LONG_BINPUT) {
            PICKLEX_TAKE(p, 4);
            PICKLEX_CALL(h_.on_put(detail::load_le32(p)));
        }
        PICKLEX_OP(PUT) {
            std::size_t size = 0;
            const char* text = take_line_cstr(2, size);
            if (!text) return false;
            PICKLEX_CALL(h_.on_put_text(std::string_view(text, size)));
        }
        PICKLEX_OP(MEMOIZE) PICKLEX_CALL(h_.on_memoize());

        // ---- globals and object construction ----
        PICKLEX_OP(GLOBAL) {
            std::string_view module, name;
            if (!take_line_pair(module, name, Op::GLOBAL)) return false;
            PICKLEX_CALL(h_.on_global(module, name));
        }
        PICKLEX_OP(INST) {
            std::string_view module, name;
            if (!take_line_pair(module, name, Op::INST)) return false;
            PICKLEX_CALL(h_.on_inst(module, name));
        }
        PICKLEX_OP(STACK_GLOBAL) PICKLEX_CALL(h_.on_stack_global());
        PICKLEX_OP(EXT1) {
            PICKLEX_TAKE(p, 1);
            PICKLEX_STEP(load_ext(static_cast<std::uint8_t>(*p)));
        }
        PICKLEX_OP(EXT2) {
            PICKLEX_TAKE(p, 2);
            PICKLEX_STEP(load_ext(detail::load_le16(p)));
        }
        PICKLEX_OP(EXT4) {
            PICKLEX_TAKE(p, 4);
            PICKLEX_STEP(load_ext(static_cast<std::int32_t>(detail::load_le32(p))));
        }
        PICKLEX_OP(REDUCE) PICKLEX_CALL(h_.on_reduce());
        PICKLEX_OP(BUILD) PICKLEX_CALL(h_.on_build());
        PICKLEX_OP(NEWOBJ) PICKLEX_CALL(h_.on_newobj());
        PICKLEX_OP(NEWOBJ_EX) PICKLEX_CALL(h_.on_newobj_ex());
        PICKLEX_OP(OBJ) PICKLEX_CALL(h_.on_obj());
        PICKLEX_OP(PERSID) {
            std::string_view line;
            if (!take_line(line)) return fail_source(false);
            PICKLEX_CALL(h_.on_persid(line.substr(0, line.size() - 1)));
        }
        PICKLEX_OP(BINPERSID) PICKLEX_CALL(h_.on_binpersid());

        // ---- framing and control ----
        PICKLEX_OP(PROTO) {
            PICKLEX_TAKE(p, 1);
            const int protocol = static_cast<std::uint8_t>(*p);
            if (protocol > kHighestProtocol)
                return fail(Errc::unsupported_protocol,
                            "unsupported pickle protocol: " + std::to_string(protocol));
            PICKLEX_CALL(h_.on_proto(protocol));
        }
        PICKLEX_OP(FRAME) {
            PICKLEX_TAKE(p, 8);
            const std::uint64_t n = detail::load_le64(p);
            if (n > kMaxPayloadSize)
                return fail(Errc::too_large, "FRAME length exceeds system's maximum of " +
                                                 std::to_string(kMaxPayloadSize) + " bytes");
            // A frame is a hint: make it readable in one piece (a stream reads it whole),
            // then decode its opcodes as if it were not there.
            if (static_cast<std::uint64_t>(src_.end - src_.next) < n && !src_.fill(n))
                return fail_source(false);
            PICKLEX_NEXT();
        }
        PICKLEX_OP(STOP) {
            if (!h_.on_stop()) return fail_handler();
            if (!src_.finish()) return fail_source(false);
            return true;
        }
#if !PICKLEX_COMPUTED_GOTO
    }
    goto not_an_opcode;
#endif

refill:
    // The window is used up where an opcode should start: read on, or end cleanly.
    if (!src_.fill(1)) {
        op_offset_ = src_.offset();
        op_start_ = nullptr; // no opcode byte to point at
        return fail_source(true);
    }
    op = static_cast<std::uint8_t>(*src_.next++);
    if constexpr (!kFixedWindow) op_ = op;
#if PICKLEX_COMPUTED_GOTO
    PICKLEX_JUMP();
#else
    goto dispatch;
#endif

not_an_opcode : {
    // CPython quotes printable bytes as themselves.
    const auto byte = op;
    std::string detail = "invalid load key, '";
    if (byte >= 0x20 && byte <= 0x7e && byte != '\'' && byte != '\\') {
        detail += static_cast<char>(byte);
    } else {
        static constexpr char kHex[] = "0123456789abcdef";
        detail += "\\x";
        detail += kHex[byte >> 4];
        detail += kHex[byte & 15];
    }
    detail += "'.";
    return fail(Errc::bad_opcode, std::move(detail));
}
#undef PICKLEX_OP
#undef PICKLEX_JUMP
#undef PICKLEX_NEXT
#undef PICKLEX_CALL
#undef PICKLEX_STEP
#undef PICKLEX_TAKE
#undef PICKLEX_TAKE_PAYLOAD
}

/// Decode one pickle held in memory. `consumed`, if given, receives the bytes used up to and
/// including STOP (what follows is not part of the pickle).
template <class Handler>
bool read_pickle(const void* data, std::size_t size, Handler& handler,
                 std::size_t* consumed = nullptr) {
    MemorySource source(data, size);
    Reader<MemorySource, Handler> reader(source, handler);
    const bool ok = reader.run();
    if (consumed) *consumed = source.offset();
    return ok;
}

} // namespace picklex
