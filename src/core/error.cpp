// src/core/error.cpp: names and messages for core errors.
#include "picklex/error.hpp"

#include "picklex/opcodes.hpp"

namespace picklex {

std::string_view errc_name(Errc code) noexcept {
    switch (code) {
    case Errc::ok: return "ok";
    case Errc::empty_input: return "empty_input";
    case Errc::truncated: return "truncated";
    case Errc::bad_opcode: return "bad_opcode";
    case Errc::bad_argument: return "bad_argument";
    case Errc::negative_length: return "negative_length";
    case Errc::too_large: return "too_large";
    case Errc::unsupported_protocol: return "unsupported_protocol";
    case Errc::stack_underflow: return "stack_underflow";
    case Errc::mark_missing: return "mark_missing";
    case Errc::unexpected_mark: return "unexpected_mark";
    case Errc::memo_missing: return "memo_missing";
    case Errc::bad_memo_key: return "bad_memo_key";
    case Errc::bad_type: return "bad_type";
    case Errc::limit_exceeded: return "limit_exceeded";
    case Errc::no_buffers: return "no_buffers";
    case Errc::buffers_exhausted: return "buffers_exhausted";
    case Errc::unencodable: return "unencodable";
    case Errc::out_of_memory: return "out_of_memory";
    case Errc::external: return "external";
    }
    return "unknown";
}

std::string Error::message() const {
    std::string text = detail.empty() ? std::string(errc_name(code)) : detail;
    if (opcode >= 0) {
        text += " (at opcode ";
        text += op_name(static_cast<std::uint8_t>(opcode));
        text += ", offset ";
        text += std::to_string(offset);
        text += ')';
    }
    return text;
}

} // namespace picklex
