// include/picklex/writer.hpp: the pickle encoder's output side.
//
// A Writer owns the output buffer, protocol-4 framing, the per-protocol choice of opcode for
// every atom (ints, floats, strings, bytes, memo PUT/GET, globals) and the large-payload rule.
// Object walkers (the CPython pickler, the native Value encoder) decide *what* to write;
// the Writer decides *how*, byte for byte as CPython's own pickler does.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "picklex/detail/endian.hpp"
#include "picklex/error.hpp"
#include "picklex/opcodes.hpp"

namespace picklex {

/// Where the encoded bytes live. The default keeps them in malloc'd memory; the CPython front
/// plugs in a bytes object so `dumps` can return its buffer without a final copy.
struct OutputStorage {
    void* context = nullptr;
    /// Grow the block to at least `capacity` bytes keeping the first `used` bytes; with
    /// capacity 0, free it. Returns the (possibly moved) block, or nullptr on failure.
    char* (*resize)(void* context, char* data, std::size_t used, std::size_t capacity) = nullptr;
};

/// Where committed output goes when pickling to a stream. Without a sink the Writer keeps
/// everything in memory (dumps); with one, it hands over each committed frame and streams
/// large payloads directly, so memory stays bounded by one frame plus one payload.
class Sink {
  public:
    virtual ~Sink() = default;
    /// Write `size` bytes. `owner` is an opaque hint naming the object that owns `data` when
    /// it is a payload passed through unchanged (the front can then write that object
    /// itself instead of a copy); nullptr for the Writer's own buffer.
    virtual bool write(const char* data, std::size_t size, const void* owner) = 0;
};

/// Encodes opcodes into a buffer with CPython's framing and opcode choices.
class Writer {
  public:
    explicit Writer(OutputStorage storage = {}) noexcept;
    ~Writer();
    Writer(const Writer&) = delete;
    Writer& operator=(const Writer&) = delete;

    // ---- configuration ----

    /// Start a new pickle for `protocol` (0..5): clears the buffer and any error, and makes
    /// sure `initial_capacity` bytes are ready. Framing is off until enable_framing() (the
    /// pickler turns it on after PROTO). bin() becomes `protocol > 0`.
    bool begin(int protocol, std::size_t initial_capacity = 4096);
    int protocol() const noexcept { return protocol_; }
    /// Binary opcodes (BININT, BINPUT, EMPTY_LIST...) rather than text ones. True for
    /// protocols >= 1; settable because pickle exposes it as the Pickler's `bin` attribute.
    bool bin() const noexcept { return bin_; }
    void set_bin(bool on) noexcept { bin_ = on; }
    void set_sink(Sink* sink) noexcept { sink_ = sink; }
    Sink* sink() const noexcept { return sink_; }

    // ---- raw output ----

    /// Room for `n` more bytes (opening a frame first when one is due); write them, then
    /// call commit(n). Returns nullptr on allocation failure (see error()).
    char* reserve(std::size_t n) {
        std::size_t need = n;
        const bool open_frame = framing_ && frame_start_ == kNoFrame;
        if (open_frame) need += wire::kFrameHeaderSize;
        if (need > capacity_ - size_ && !grow(need)) return nullptr;
        if (open_frame) {
            frame_start_ = size_;
            size_ += wire::kFrameHeaderSize;
        }
        return data_ + size_;
    }
    void commit(std::size_t n) noexcept { size_ += n; }

    bool write(const void* bytes, std::size_t n) {
        char* out = reserve(n);
        if (!out) return false;
        std::memcpy(out, bytes, n);
        size_ += n;
        return true;
    }
    bool write_op(Op op) {
        char* out = reserve(1);
        if (!out) return false;
        *out = static_cast<char>(op);
        size_ += 1;
        return true;
    }
    /// An opcode followed by a 1-byte argument.
    bool write_op_u8(Op op, std::uint8_t arg) {
        char* out = reserve(2);
        if (!out) return false;
        out[0] = static_cast<char>(op);
        out[1] = static_cast<char>(arg);
        size_ += 2;
        return true;
    }
    /// An opcode followed by a 4-byte little-endian argument.
    bool write_op_u32(Op op, std::uint32_t arg);
    /// An opcode followed by an 8-byte little-endian argument.
    bool write_op_u64(Op op, std::uint64_t arg);

    // ---- framing (protocol >= 4) ----

    void enable_framing(bool on) noexcept { framing_ = on; }
    bool framing() const noexcept { return framing_; }
    /// Call before each object is saved: commits the open frame once it reaches the frame
    /// target, and with a sink, flushes it. Same points as CPython, so frames match.
    bool opcode_boundary() {
        if (!framing_ || frame_start_ == kNoFrame) return true;
        if (size_ - frame_start_ - wire::kFrameHeaderSize < wire::kFrameSizeTarget) return true;
        return end_frame_and_flush();
    }
    /// Close the open frame: write its header, or drop the header if the frame is tiny.
    void commit_frame() noexcept;
    /// Commit the frame and hand the buffer to the sink (no-op without one).
    bool flush();

    // ---- atoms: each emits exactly the bytes CPython's pickler writes at protocol() ----

    bool save_none() { return write_op(Op::NONE); }
    bool save_bool(bool value);
    /// Any int that fits in 64 bits: BININT1/2/BININT, INT text, LONG1 or LONG text.
    bool save_int(std::int64_t value) {
        if (bin_ && static_cast<std::uint64_t>(value) <= 0xffff) {
            const auto bits = static_cast<std::uint32_t>(value);
            const std::size_t n = bits <= 0xff ? 2 : 3;
            char* out = reserve(3);
            if (!out) return false;
            out[0] = static_cast<char>(n == 2 ? Op::BININT1 : Op::BININT2);
            out[1] = static_cast<char>(bits & 0xff);
            out[2] = static_cast<char>(bits >> 8);
            size_ += n;
            return true;
        }
        return save_int_slow(value);
    }
    /// A big int as its minimal little-endian two's-complement bytes (LONG1/LONG4); protocol >= 2.
    bool save_long_bytes(const std::uint8_t* bytes, std::size_t nbytes);
    /// A big int for protocols 0/1: LONG with its decimal digits (sign included) and 'L'.
    bool save_long_text(std::string_view decimal_digits);
    bool save_float(double value) {
        if (!bin_) return save_float_text(value);
        char* out = reserve(9);
        if (!out) return false;
        out[0] = static_cast<char>(Op::BINFLOAT);
        std::uint64_t bits;
        std::memcpy(&bits, &value, sizeof bits);
        detail::store_be64(out + 1, bits);
        size_ += 9;
        return true;
    }
    /// A str already encoded as UTF-8 (surrogates as surrogatepass) for protocols >= 1.
    bool save_unicode_utf8(const char* utf8, std::size_t size, const void* owner = nullptr) {
        if (size <= 0xff && protocol_ >= 4) return write_short(Op::SHORT_BINUNICODE, utf8, size);
        return save_unicode_utf8_slow(utf8, size, owner);
    }
    /// A str for protocols >= 1 given as code units of width `kind` (1, 2 or 4 bytes),
    /// encoded to UTF-8 (surrogates as surrogatepass) straight into the output.
    bool save_unicode_units(int kind, const void* units, std::size_t length);
    /// A str for protocol 0 (UNICODE with raw-unicode-escape); code units of width `kind`
    /// (1, 2 or 4 bytes), as CPython stores strings.
    bool save_unicode_text(int kind, const void* units, std::size_t length);
    /// bytes for protocols >= 3 (SHORT_BINBYTES/BINBYTES/BINBYTES8).
    bool save_bytes(const char* data, std::size_t size, const void* owner = nullptr) {
        if (size <= 0xff) return write_short(Op::SHORT_BINBYTES, data, size);
        return save_bytes_slow(data, size, owner);
    }
    /// bytearray (or a writable PickleBuffer in band) for protocol 5.
    bool save_bytearray(const char* data, std::size_t size, const void* owner = nullptr);
    /// An out-of-band buffer marker (NEXT_BUFFER, then READONLY_BUFFER if read-only).
    bool save_next_buffer(bool readonly);
    /// GLOBAL text form: module and name lines (the caller checked the encoding).
    bool save_global_text(std::string_view module, std::string_view name);
    /// EXT1/EXT2/EXT4 for an extension-registry code in 1..2**31-1.
    bool save_ext(std::uint32_t code);
    /// PERSID text form: the id line (ASCII, checked by the caller).
    bool save_persid_text(std::string_view pid);
    /// Memoize the object just written as memo entry `index` (MEMOIZE, BINPUT, LONG_BINPUT, PUT).
    bool save_memo_put(std::size_t index) {
        if (protocol_ >= 4) return write_op(Op::MEMOIZE);
        return save_memo_put_slow(index);
    }
    /// Fetch memo entry `index` (BINGET, LONG_BINGET, GET).
    bool save_memo_get(std::size_t index) {
        if (bin_ && index < 256) return write_op_u8(Op::BINGET, static_cast<std::uint8_t>(index));
        return save_memo_get_slow(index);
    }

    // ---- result ----

    const char* data() const noexcept { return data_; }
    std::size_t size() const noexcept { return size_; }
    /// Forget the content (after it was flushed somewhere), keep the capacity.
    void clear() noexcept {
        size_ = 0;
        frame_start_ = kNoFrame;
    }
    /// Hand over the buffer: the caller owns it (free it through the same OutputStorage).
    char* release(std::size_t* size) noexcept;

    const Error& error() const noexcept { return error_; }
    /// Record an error raised by a caller (e.g. Errc::external for a failed Python call).
    bool fail(Errc code, std::string detail = {});

  private:
    static constexpr std::size_t kNoFrame = static_cast<std::size_t>(-1);
    /// A growth step up to this size is where the next pickle's first growth lands (a frame's
    /// worth when streaming), but never the size of one huge pickle.
    static constexpr std::size_t kMaxHint = 1 << 20;
    /// A payload-sized buffer ends on a page boundary of its block, counting this much for
    /// the allocator's and the owning object's headers, and keeps at least kPayloadTailRoom
    /// bytes free after the payload.
    static constexpr std::size_t kPageSize = 4096;
    static constexpr std::size_t kBlockOverhead = 64;
    static constexpr std::size_t kPayloadTailRoom = 256;

    bool grow(std::size_t extra);
    bool grow_to(std::size_t capacity);
    bool end_frame_and_flush();
    /// The large-payload rule: payloads of kFrameSizeTarget or more end the frame and go
    /// unframed (straight to the sink when there is one), as CPython does.
    bool write_payload(const char* header, std::size_t header_size, const char* data,
                       std::size_t size, const void* owner);
    bool write_decimal_line(Op op, std::int64_t value);
    /// An opcode, a one-byte length and that many bytes (length <= 255).
    bool write_short(Op op, const char* data, std::size_t size) {
        char* out = reserve(2 + size);
        if (!out) return false;
        out[0] = static_cast<char>(op);
        out[1] = static_cast<char>(size);
        std::memcpy(out + 2, data, size);
        size_ += 2 + size;
        return true;
    }
    bool save_int_slow(std::int64_t value);
    bool save_float_text(double value);
    bool save_unicode_utf8_slow(const char* utf8, std::size_t size, const void* owner);
    /// The header of a UTF-8 string of `size` bytes; 0 if the protocol cannot express it.
    std::size_t unicode_header(std::size_t size, char* header);
    bool save_bytes_slow(const char* data, std::size_t size, const void* owner);
    bool save_memo_put_slow(std::size_t index);
    bool save_memo_get_slow(std::size_t index);

    OutputStorage storage_;
    Sink* sink_ = nullptr;
    char* data_ = nullptr;
    std::size_t size_ = 0;
    std::size_t capacity_ = 0;
    std::size_t frame_start_ = kNoFrame;
    std::size_t capacity_hint_ = 0; // capacity the next growth from scratch jumps to
    int protocol_ = 0;
    bool bin_ = false;
    bool framing_ = false;
    Error error_;
};

/// Python's repr() of a float ("1.0", "1e+16", "nan", "-inf"), as the FLOAT opcode carries it.
/// Writes at most 32 bytes to `out` and returns the length.
std::size_t format_float_repr(double value, char* out) noexcept;

} // namespace picklex
