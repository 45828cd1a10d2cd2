// src/python/output_buffer.hpp: where the Pickler's Writer keeps the bytes it encodes.
//
// Small pickles are built in a scratch block that is reused from one pickle to the next and
// copied once into the result. A pickle that outgrows the scratch moves, once, into a bytes
// object that then grows by realloc, so dumps() hands that object back after a final shrink
// instead of copying a large pickle: peak memory stays what the stdlib's pickler uses.
#pragma once

#include "python.hpp"

#include <cstdlib>
#include <cstring>

#include "picklex/writer.hpp"
#include "fresh_memory.hpp"

namespace picklex::py {

class OutputBuffer {
  public:
    /// Pickles up to this size never leave the scratch block.
    static constexpr std::size_t kScratchLimit = 256 * 1024;

    OutputBuffer() = default;
    ~OutputBuffer() {
        std::free(scratch_);
        Py_XDECREF(bytes_);
    }
    OutputBuffer(const OutputBuffer&) = delete;
    OutputBuffer& operator=(const OutputBuffer&) = delete;

    OutputStorage storage() noexcept { return OutputStorage{this, &resize}; }

    /// Take the Writer's content out as a bytes object of exactly its size; the Writer
    /// starts over (in the scratch block) on its next write. New reference, or nullptr with
    /// an exception set.
    PyObject* take(Writer& writer) {
        std::size_t size = 0;
        const char* data = writer.release(&size);
        if (!bytes_) return PyBytes_FromStringAndSize(data, static_cast<Py_ssize_t>(size));
        PyObject* result = bytes_;
        bytes_ = nullptr;
        if (_PyBytes_Resize(&result, static_cast<Py_ssize_t>(size)) < 0) return nullptr;
        return result;
    }

    /// Between pickles: drop whatever the Writer still holds (a pickle that failed half-way)
    /// and give back a scratch block that grew large.
    void reset(Writer& writer) noexcept {
        std::size_t size = 0;
        writer.release(&size);
        Py_CLEAR(bytes_);
        if (scratch_capacity_ > kKeepScratch) {
            std::free(scratch_);
            scratch_ = nullptr;
            scratch_capacity_ = 0;
        }
    }

  private:
    static constexpr std::size_t kKeepScratch = 64 * 1024;
    /// glibc's largest dynamic mmap threshold: a block this large is always a fresh mapping
    /// of its own. Smaller ones are often recycled heap memory, whose pages are resident
    /// already and where advice would only split the heap's mapping.
    static constexpr std::size_t kHugePagesFrom = 32 << 20;
    /// What a bytes object and glibc's chunk header add in front of (and the terminating NUL
    /// after) the data: a capacity of whole pages minus this fills its mapping exactly.
    static constexpr std::size_t kBlockOverhead = 64;
    static constexpr std::size_t kPageSize = 4096;

    static char* resize(void* context, char* data, std::size_t used, std::size_t capacity) {
        auto* self = static_cast<OutputBuffer*>(context);
        if (capacity == 0) {
            Py_CLEAR(self->bytes_);
            return nullptr;
        }
        if (!self->bytes_ && capacity <= kScratchLimit) {
            if (capacity > self->scratch_capacity_) {
                char* block = static_cast<char*>(std::realloc(self->scratch_, capacity));
                if (!block) return nullptr;
                self->scratch_ = block;
                self->scratch_capacity_ = capacity;
            }
            return self->scratch_;
        }
        const bool huge = capacity >= kHugePagesFrom;
        // A block that gets huge-page advice ends exactly where its mapping ends, so the
        // advice covers the mapping whole (see advise_huge_pages_whole).
        if (huge) capacity = (capacity + kBlockOverhead + kPageSize - 1) / kPageSize * kPageSize -
                             kBlockOverhead;
        if (capacity > static_cast<std::size_t>(PY_SSIZE_T_MAX)) return nullptr;
        if (!self->bytes_) {
            self->bytes_ = PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(capacity));
            if (self->bytes_ && used) std::memcpy(PyBytes_AS_STRING(self->bytes_), data, used);
        } else if (_PyBytes_Resize(&self->bytes_, static_cast<Py_ssize_t>(capacity)) < 0) {
            self->bytes_ = nullptr; // _PyBytes_Resize freed it
        }
        if (!self->bytes_) {
            PyErr_Clear(); // the Writer reports out_of_memory itself
            return nullptr;
        }
        // Fresh mapped memory is written once: with 2 MiB pages its first touch costs a few
        // dozen page faults instead of one per 4 KiB, and untouched pages stay unmapped.
        if (huge) advise_huge_pages_whole(PyBytes_AS_STRING(self->bytes_), capacity);
        return PyBytes_AS_STRING(self->bytes_);
    }

    char* scratch_ = nullptr;
    std::size_t scratch_capacity_ = 0;
    PyObject* bytes_ = nullptr; ///< the pickle once it outgrew the scratch block
};

} // namespace picklex::py
