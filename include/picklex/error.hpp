// include/picklex/error.hpp: errors as values for the C++ core.
//
// The core never throws and never touches Python. A failing operation returns false (or an
// empty result) and leaves an Error that says what went wrong, at which opcode and at which
// byte offset. The CPython front maps each code to the exception the stdlib raises there.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace picklex {

/// What went wrong. Each code documents the stdlib exception the front maps it to.
enum class Errc : std::uint8_t {
    ok = 0,             ///< no error
    empty_input,        ///< nothing to read at all (EOFError "Ran out of input")
    truncated,          ///< the stream ends inside an opcode or argument (UnpicklingError)
    bad_opcode,         ///< a byte that is not an opcode (UnpicklingError "invalid load key")
    bad_argument,       ///< a malformed inline argument: bad digits, bad quoting (UnpicklingError)
    negative_length,    ///< a signed length below zero (UnpicklingError)
    too_large,          ///< a length that cannot fit in memory on this machine (UnpicklingError)
    unsupported_protocol, ///< PROTO names a protocol above kHighestProtocol (ValueError)
    stack_underflow,    ///< an opcode needs more stack items than there are (UnpicklingError)
    mark_missing,       ///< an opcode needs a MARK and there is none (UnpicklingError)
    unexpected_mark,    ///< a MARK sits where an object was expected (UnpicklingError)
    memo_missing,       ///< GET of a memo key that was never PUT (UnpicklingError)
    bad_memo_key,       ///< a negative or oversized memo key (ValueError/UnpicklingError)
    bad_type,           ///< an operand has the wrong type for the opcode (UnpicklingError)
    limit_exceeded,     ///< a configured resource limit was hit (UnpicklingError)
    no_buffers,         ///< NEXT_BUFFER without out-of-band buffers (UnpicklingError)
    buffers_exhausted,  ///< NEXT_BUFFER after the last out-of-band buffer (UnpicklingError)
    unencodable,        ///< a value the chosen protocol cannot express (PicklingError)
    out_of_memory,      ///< allocation failed (MemoryError)
    external,           ///< a handler failed and recorded its own error (e.g. a Python exception)
};

/// A short, stable name for an error code ("truncated", "bad_opcode", ...).
std::string_view errc_name(Errc code) noexcept;

/// A core error: the code, the opcode being processed (-1 if none) and the byte offset of that
/// opcode in the stream, plus a human-readable detail.
struct Error {
    Errc code = Errc::ok;
    int opcode = -1;
    std::size_t offset = 0;
    std::string detail;

    explicit operator bool() const noexcept { return code != Errc::ok; }

    /// "detail (at opcode NAME, offset N)" — the message the front shows to users.
    std::string message() const;
};

} // namespace picklex
