// src/core/writer.cpp: buffer growth, framing and the per-protocol encoding of atoms.
#include "picklex/writer.hpp"

#include <charconv>
#include <cstdlib>

#include "picklex/detail/endian.hpp"
#include "picklex/detail/utf8.hpp"

namespace picklex {

namespace {

char* malloc_resize(void*, char* data, std::size_t, std::size_t capacity) {
    if (capacity == 0) {
        std::free(data);
        return nullptr;
    }
    return static_cast<char*>(std::realloc(data, capacity));
}

} // namespace

Writer::Writer(OutputStorage storage) noexcept : storage_(storage) {
    if (!storage_.resize) storage_.resize = malloc_resize;
}

Writer::~Writer() {
    if (data_) storage_.resize(storage_.context, data_, 0, 0);
}

bool Writer::begin(int protocol, std::size_t initial_capacity) {
    protocol_ = protocol;
    bin_ = protocol > 0;
    framing_ = false;
    error_ = Error{};
    clear();
    if (capacity_hint_ < initial_capacity) capacity_hint_ = initial_capacity;
    if (capacity_ < initial_capacity) {
        char* block = storage_.resize(storage_.context, data_, 0, initial_capacity);
        if (!block) return fail(Errc::out_of_memory, "cannot allocate the output buffer");
        data_ = block;
        capacity_ = initial_capacity;
    }
    return true;
}

bool Writer::grow(std::size_t extra) {
    if (extra > (static_cast<std::size_t>(-1) / 2 - size_) / 2)
        return fail(Errc::out_of_memory, "pickle output too large");
    const std::size_t needed = size_ + extra;
    if (extra >= wire::kFrameSizeTarget && extra > size_) {
        // A payload larger than everything written so far (one big bytes, str or array):
        // size the buffer for it once instead of by 1.5x. A block the size of the payload
        // is one the allocator recycles from the frees of same-size objects, where a 1.5x
        // block is typically mapped afresh and faults in every page it gets written to.
        // The rest of the last page holds the opcodes that close the pickle.
        const std::size_t wanted =
            (needed + kPayloadTailRoom + kBlockOverhead + kPageSize - 1) / kPageSize * kPageSize -
            kBlockOverhead;
        return grow_to(wanted < capacity_hint_ ? capacity_hint_ : wanted);
    }
    // Otherwise the same growth as CPython's pickler (x1.5 of what is needed), from the
    // same starting points: a large pickle reserves what the stdlib's does, and the final
    // shrink is a realloc in place.
    std::size_t wanted = needed / 2 * 3;
    if (wanted < needed) wanted = needed;
    if (wanted < capacity_hint_) wanted = capacity_hint_;
    // Only these steps become the next pickle's starting point: a payload-sized block is
    // off that sequence, and would move every later pickle's steps off it too.
    if (wanted <= kMaxHint && wanted > capacity_hint_) capacity_hint_ = wanted;
    return grow_to(wanted);
}

bool Writer::grow_to(std::size_t wanted) {
    char* block = storage_.resize(storage_.context, data_, size_, wanted);
    if (!block) return fail(Errc::out_of_memory, "cannot grow the output buffer");
    data_ = block;
    capacity_ = wanted;
    return true;
}

char* Writer::release(std::size_t* size) noexcept {
    char* block = data_;
    *size = size_;
    data_ = nullptr;
    size_ = capacity_ = 0;
    frame_start_ = kNoFrame;
    return block;
}

bool Writer::fail(Errc code, std::string detail) {
    if (!error_) {
        error_.code = code;
        error_.detail = std::move(detail);
    }
    return false;
}

bool Writer::write_op_u32(Op op, std::uint32_t arg) {
    char* out = reserve(5);
    if (!out) return false;
    out[0] = static_cast<char>(op);
    detail::store_le32(out + 1, arg);
    size_ += 5;
    return true;
}

bool Writer::write_op_u64(Op op, std::uint64_t arg) {
    char* out = reserve(9);
    if (!out) return false;
    out[0] = static_cast<char>(op);
    detail::store_le64(out + 1, arg);
    size_ += 9;
    return true;
}

// ---- framing ----

void Writer::commit_frame() noexcept {
    if (!framing_ || frame_start_ == kNoFrame) return;
    const std::size_t frame_len = size_ - frame_start_ - wire::kFrameHeaderSize;
    char* header = data_ + frame_start_;
    if (frame_len >= wire::kFrameSizeMin) {
        header[0] = static_cast<char>(Op::FRAME);
        detail::store_le64(header + 1, frame_len);
    } else {
        std::memmove(header, header + wire::kFrameHeaderSize, frame_len);
        size_ -= wire::kFrameHeaderSize;
    }
    frame_start_ = kNoFrame;
}

bool Writer::flush() {
    commit_frame();
    if (!sink_ || size_ == 0) return true;
    if (!sink_->write(data_, size_, nullptr)) return fail(Errc::external, "sink write failed");
    clear();
    return true;
}

bool Writer::end_frame_and_flush() {
    commit_frame();
    return sink_ ? flush() : true;
}

bool Writer::write_payload(const char* header, std::size_t header_size, const char* data,
                           std::size_t size, const void* owner) {
    if (size < wire::kFrameSizeTarget) {
        char* out = reserve(header_size + size);
        if (!out) return false;
        std::memcpy(out, header, header_size);
        std::memcpy(out + header_size, data, size);
        size_ += header_size + size;
        return true;
    }
    // Big payloads go outside any frame so a reader can fetch them with one read.
    commit_frame();
    const bool was_framing = framing_;
    framing_ = false;
    bool ok = write(header, header_size);
    if (ok && sink_) {
        ok = flush() && (sink_->write(data, size, owner) ||
                         fail(Errc::external, "sink write failed"));
    } else if (ok) {
        ok = write(data, size);
    }
    framing_ = was_framing;
    return ok;
}

// ---- atoms ----

bool Writer::save_bool(bool value) {
    if (protocol_ >= 2) return write_op(value ? Op::NEWTRUE : Op::NEWFALSE);
    return write(value ? "I01\n" : "I00\n", 4);
}

bool Writer::write_decimal_line(Op op, std::int64_t value) {
    char text[32];
    text[0] = static_cast<char>(op);
    char* end = std::to_chars(text + 1, text + sizeof(text) - 1, value).ptr;
    *end++ = '\n';
    return write(text, static_cast<std::size_t>(end - text));
}

bool Writer::save_int_slow(std::int64_t value) {
    if (value >= INT32_MIN && value <= INT32_MAX) {
        if (!bin()) return write_decimal_line(Op::INT, value);
        const auto bits = static_cast<std::uint32_t>(value);
        if (bits <= 0xff) return write_op_u8(Op::BININT1, static_cast<std::uint8_t>(bits));
        if (bits <= 0xffff) {
            char* out = reserve(3);
            if (!out) return false;
            out[0] = static_cast<char>(Op::BININT2);
            out[1] = static_cast<char>(bits & 0xff);
            out[2] = static_cast<char>(bits >> 8);
            size_ += 3;
            return true;
        }
        return write_op_u32(Op::BININT, bits);
    }
    if (protocol_ < 2) {
        char text[32];
        text[0] = static_cast<char>(Op::LONG);
        char* end = std::to_chars(text + 1, text + sizeof(text) - 2, value).ptr;
        *end++ = 'L';
        *end++ = '\n';
        return write(text, static_cast<std::size_t>(end - text));
    }
    // Minimal two's complement, as CPython computes it: one byte more than the magnitude's
    // bit length needs, then one less when that top byte is pure sign extension.
    const std::uint64_t magnitude =
        value < 0 ? ~static_cast<std::uint64_t>(value) + 1 : static_cast<std::uint64_t>(value);
    const int nbits = 64 - __builtin_clzll(magnitude);
    std::size_t nbytes = static_cast<std::size_t>(nbits >> 3) + 1;
    std::uint8_t bytes[9];
    const std::uint64_t raw = static_cast<std::uint64_t>(value);
    for (std::size_t i = 0; i < 8; ++i) bytes[i] = static_cast<std::uint8_t>(raw >> (8 * i));
    bytes[8] = value < 0 ? 0xff : 0x00;
    if (value < 0 && nbytes > 1 && bytes[nbytes - 1] == 0xff && (bytes[nbytes - 2] & 0x80))
        --nbytes;
    return save_long_bytes(bytes, nbytes);
}

bool Writer::save_long_bytes(const std::uint8_t* bytes, std::size_t nbytes) {
    if (nbytes > 0x7fffffff) return fail(Errc::unencodable, "int too large to pickle");
    if (nbytes < 256) {
        char* out = reserve(2 + nbytes);
        if (!out) return false;
        out[0] = static_cast<char>(Op::LONG1);
        out[1] = static_cast<char>(nbytes);
        if (nbytes) std::memcpy(out + 2, bytes, nbytes);
        size_ += 2 + nbytes;
        return true;
    }
    return write_op_u32(Op::LONG4, static_cast<std::uint32_t>(nbytes)) && write(bytes, nbytes);
}

bool Writer::save_long_text(std::string_view decimal_digits) {
    char* out = reserve(decimal_digits.size() + 3);
    if (!out) return false;
    out[0] = static_cast<char>(Op::LONG);
    std::memcpy(out + 1, decimal_digits.data(), decimal_digits.size());
    out[1 + decimal_digits.size()] = 'L';
    out[2 + decimal_digits.size()] = '\n';
    size_ += decimal_digits.size() + 3;
    return true;
}

bool Writer::save_float_text(double value) {
    char text[40];
    text[0] = static_cast<char>(Op::FLOAT);
    std::size_t n = 1 + format_float_repr(value, text + 1);
    text[n++] = '\n';
    return write(text, n);
}

std::size_t Writer::unicode_header(std::size_t size, char* header) {
    if (size <= 0xff && protocol_ >= 4) {
        header[0] = static_cast<char>(Op::SHORT_BINUNICODE);
        header[1] = static_cast<char>(size);
        return 2;
    }
    if (size <= 0xffffffffu) {
        header[0] = static_cast<char>(Op::BINUNICODE);
        detail::store_le32(header + 1, static_cast<std::uint32_t>(size));
        return 5;
    }
    if (protocol_ >= 4) {
        header[0] = static_cast<char>(Op::BINUNICODE8);
        detail::store_le64(header + 1, size);
        return 9;
    }
    fail(Errc::unencodable,
         "serializing a string larger than 4 GiB requires pickle protocol 4 or higher");
    return 0;
}

bool Writer::save_unicode_utf8_slow(const char* utf8, std::size_t size, const void* owner) {
    char header[9];
    const std::size_t header_size = unicode_header(size, header);
    return header_size && write_payload(header, header_size, utf8, size, owner);
}

bool Writer::save_unicode_units(int kind, const void* units, std::size_t length) {
    const std::size_t size =
        detail::with_units(kind, units, [&](auto* u) { return detail::utf8_length(u, length); });
    char header[9];
    const std::size_t header_size = unicode_header(size, header);
    if (!header_size) return false;
    auto encode = [&](char* out) {
        return detail::with_units(kind, units, [&](auto* u) { return detail::encode_utf8(u, length, out); });
    };
    if (size >= wire::kFrameSizeTarget && sink_) {
        // Streamed payloads go to the sink as a chunk of their own, as the stdlib does.
        char* text = static_cast<char*>(std::malloc(size));
        if (!text) return fail(Errc::out_of_memory, "cannot encode a large string");
        encode(text);
        const bool ok = write_payload(header, header_size, text, size, nullptr);
        std::free(text);
        return ok;
    }
    const bool unframed = size >= wire::kFrameSizeTarget;
    const bool was_framing = framing_;
    if (unframed) {
        commit_frame();
        framing_ = false;
    }
    char* out = reserve(header_size + size);
    if (out) {
        std::memcpy(out, header, header_size);
        encode(out + header_size);
        size_ += header_size + size;
    }
    framing_ = was_framing;
    return out != nullptr;
}

bool Writer::save_unicode_text(int kind, const void* units, std::size_t length) {
    static constexpr char kHex[] = "0123456789abcdef";
    // Worst case is 10 bytes per code point ("\Uxxxxxxxx"); reserve per chunk so a long
    // string never needs 10x its size at once.
    constexpr std::size_t kChunk = 4096;
    if (!write_op(Op::UNICODE)) return false;
    std::size_t i = 0;
    while (i < length) {
        const std::size_t end = length - i < kChunk ? length : i + kChunk;
        char* out = reserve((end - i) * 10);
        if (!out) return false;
        char* p = out;
        for (; i < end; ++i) {
            std::uint32_t ch;
            if (kind == 1) ch = static_cast<const std::uint8_t*>(units)[i];
            else if (kind == 2) ch = static_cast<const std::uint16_t*>(units)[i];
            else ch = static_cast<const std::uint32_t*>(units)[i];
            if (ch >= 0x10000) {
                *p++ = '\\';
                *p++ = 'U';
                for (int shift = 28; shift >= 0; shift -= 4) *p++ = kHex[(ch >> shift) & 0xf];
            } else if (ch >= 256 || ch == '\\' || ch == 0 || ch == '\n' || ch == '\r' ||
                       ch == 0x1a) {
                *p++ = '\\';
                *p++ = 'u';
                for (int shift = 12; shift >= 0; shift -= 4) *p++ = kHex[(ch >> shift) & 0xf];
            } else {
                *p++ = static_cast<char>(ch);
            }
        }
        size_ += static_cast<std::size_t>(p - out);
    }
    return write("\n", 1);
}

bool Writer::save_bytes_slow(const char* data, std::size_t size, const void* owner) {
    char header[9];
    std::size_t header_size;
    if (size <= 0xff) {
        header[0] = static_cast<char>(Op::SHORT_BINBYTES);
        header[1] = static_cast<char>(size);
        header_size = 2;
    } else if (size <= 0xffffffffu) {
        header[0] = static_cast<char>(Op::BINBYTES);
        detail::store_le32(header + 1, static_cast<std::uint32_t>(size));
        header_size = 5;
    } else if (protocol_ >= 4) {
        header[0] = static_cast<char>(Op::BINBYTES8);
        detail::store_le64(header + 1, size);
        header_size = 9;
    } else {
        return fail(Errc::unencodable, "serializing a bytes object larger than 4 GiB requires "
                                       "pickle protocol 4 or higher");
    }
    return write_payload(header, header_size, data, size, owner);
}

bool Writer::save_bytearray(const char* data, std::size_t size, const void* owner) {
    char header[9];
    header[0] = static_cast<char>(Op::BYTEARRAY8);
    detail::store_le64(header + 1, size);
    return write_payload(header, sizeof header, data, size, owner);
}

bool Writer::save_next_buffer(bool readonly) {
    if (!write_op(Op::NEXT_BUFFER)) return false;
    return !readonly || write_op(Op::READONLY_BUFFER);
}

bool Writer::save_global_text(std::string_view module, std::string_view name) {
    const std::size_t n = 3 + module.size() + name.size();
    char* out = reserve(n);
    if (!out) return false;
    char* p = out;
    *p++ = static_cast<char>(Op::GLOBAL);
    std::memcpy(p, module.data(), module.size());
    p += module.size();
    *p++ = '\n';
    std::memcpy(p, name.data(), name.size());
    p += name.size();
    *p++ = '\n';
    size_ += n;
    return true;
}

bool Writer::save_ext(std::uint32_t code) {
    if (code <= 0xff) return write_op_u8(Op::EXT1, static_cast<std::uint8_t>(code));
    if (code <= 0xffff) {
        char* out = reserve(3);
        if (!out) return false;
        out[0] = static_cast<char>(Op::EXT2);
        out[1] = static_cast<char>(code & 0xff);
        out[2] = static_cast<char>(code >> 8);
        size_ += 3;
        return true;
    }
    return write_op_u32(Op::EXT4, code);
}

bool Writer::save_persid_text(std::string_view pid) {
    const std::size_t n = pid.size() + 2;
    char* out = reserve(n);
    if (!out) return false;
    out[0] = static_cast<char>(Op::PERSID);
    std::memcpy(out + 1, pid.data(), pid.size());
    out[n - 1] = '\n';
    size_ += n;
    return true;
}

bool Writer::save_memo_put_slow(std::size_t index) {
    if (protocol_ >= 4) return write_op(Op::MEMOIZE);
    if (!bin()) return write_decimal_line(Op::PUT, static_cast<std::int64_t>(index));
    if (index < 256) return write_op_u8(Op::BINPUT, static_cast<std::uint8_t>(index));
    if (index <= 0xffffffffu) return write_op_u32(Op::LONG_BINPUT, static_cast<std::uint32_t>(index));
    return fail(Errc::unencodable, "memo id too large for LONG_BINPUT");
}

bool Writer::save_memo_get_slow(std::size_t index) {
    if (!bin()) return write_decimal_line(Op::GET, static_cast<std::int64_t>(index));
    if (index < 256) return write_op_u8(Op::BINGET, static_cast<std::uint8_t>(index));
    if (index <= 0xffffffffu) return write_op_u32(Op::LONG_BINGET, static_cast<std::uint32_t>(index));
    return fail(Errc::unencodable, "memo id too large for LONG_BINGET");
}

} // namespace picklex
