// src/python/unpickler_source.hpp: a Reader Source over a Python file object.
//
// It reads the way CPython's _pickle does, so a file holding several pickles loads them one
// after another and is left positioned right after each STOP:
// - with peek(), it prefetches up to 128 KiB without consuming, and later read()s exactly
//   the bytes that were used;
// - without peek(), it read()s exactly what each opcode needs (a whole FRAME at once) and
//   readline()s the text opcodes' lines.
// A length claimed by the pickle is read in bounded, growing steps, so a forged 2**60-byte
// BINBYTES8 fails once the stream runs dry instead of allocating what it claims.
#pragma once

#include "python.hpp"

#include <cstddef>

#include "picklex/detail/decode_buffer.hpp"
#include "picklex/error.hpp"
#include "refs.hpp"

namespace picklex::py {

struct ModuleState;

/// The methods a file must (read, readline) or may (readinto, peek) have, looked up in
/// CPython's order so a failing attribute raises the same error. False with an exception set
/// (TypeError if read or readline is missing).
struct FileMethods {
    Ref read, readline, readinto, peek;
    bool lookup(const ModuleState& st, PyObject* file);
};

class FileSource {
  public:
    /// CPython's prefetch size for peek().
    static constexpr std::size_t kPrefetch = 128 * 1024;
    /// Reads of claimed lengths up to this size go to the stream in one call; longer ones
    /// grow step by step with what actually arrives.
    static constexpr std::size_t kMaxBlindRead = 1024 * 1024;
    /// Bytes payloads from this size on are read straight into a bytes object that the
    /// decoder adopts (adopt_payload), as _pickle reads them into the final object.
    static constexpr std::size_t kDirectPayload = std::size_t{4} << 20;
    /// First allocation for such a payload when the stream does not say how much it holds.
    static constexpr std::size_t kFirstPayloadStep = 256 * 1024;

    /// `read` and `readline` are required; `readinto` and `peek` may be null. If peek()
    /// turns out to raise NotImplementedError, it is dropped here and in `*peek_slot` (the
    /// owner's attribute, when given), as CPython does.
    FileSource(const ModuleState& st, PyObject* read, PyObject* readline, PyObject* readinto,
               PyObject* peek, PyObject** peek_slot) noexcept;
    ~FileSource();
    FileSource(const FileSource&) = delete;
    FileSource& operator=(const FileSource&) = delete;

    const char* next = nullptr;
    const char* end = nullptr;

    bool fill(std::size_t n);
    /// A bytes payload: what is left of the window counts as its first bytes, and only the
    /// rest is read, as _pickle's _Unpickler_ReadInto does (other reads drop the rest).
    bool fill_payload(std::size_t n);
    const char* fill_line();
    /// LoadSettings::adopt_payload for this source: the bytes object holding exactly
    /// [data, data + size), if the window is one (a new reference), else null.
    static PyObject* adopt_payload(void* source, const char* data, std::size_t size);

    bool finish() { return sync(); }
    std::size_t offset() const noexcept {
        return base_ + static_cast<std::size_t>(next - begin_);
    }
    Errc failure() const noexcept { return failure_; }

  private:
    bool fill_general(std::size_t n);
    /// Consume from the stream the bytes of a peeked window that the decoder has used.
    bool sync();
    /// Make the window the buffer of `data` (a new reference, taken over).
    bool use_object(PyObject* data, bool peeked, std::size_t base);
    void drop_object() noexcept;
    /// Append exactly `n` bytes from read()/readinto() to the scratch buffer.
    bool read_into_scratch(std::size_t n);
    /// Read up to `n` bytes into `dest` with readinto() (or read() and a copy); `got` tells
    /// how many arrived. False on a stream error.
    bool read_chunk(char* dest, std::size_t n, std::size_t& got);
    /// fill_payload() for a large payload: into a bytes object grown as data arrives.
    bool fill_payload_object(std::size_t n);
    /// How many bytes the stream can still deliver, when its type tells that cheaply and
    /// without side effects (io.BytesIO; buffered or raw regular files); else SIZE_MAX.
    std::size_t remaining_hint();
    bool fail(Errc code) noexcept {
        failure_ = code;
        return false;
    }

    const ModuleState& st_;
    Ref read_, readline_, readinto_, peek_;
    PyObject** peek_slot_;
    Ref object_;      // the window is this bytes object's data...
    Py_buffer view_{}; // ...or this export of another bytes-like result
    bool has_view_ = false;
    bool peeked_ = false;          // the window was only peeked at, not consumed
    const char* begin_ = nullptr;  // start of the window
    const char* synced_ = nullptr; // in a peeked window, bytes before this were consumed
    std::size_t base_ = 0;         // stream offset of begin_
    detail::DecodeBuffer<char> scratch_;
    Errc failure_ = Errc::truncated;
};

} // namespace picklex::py
