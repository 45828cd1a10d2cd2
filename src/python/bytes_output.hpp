// src/python/bytes_output.hpp: Writer storage backed by a Python bytes object.
//
// The pickle is built directly inside a bytes object that grows by realloc, so dumps()
// returns it after one final shrink instead of copying the whole pickle, and streaming
// hands each committed frame to file.write() the same way.
#pragma once

#include <Python.h>

#include "picklex/writer.hpp"

namespace picklex::py {

class BytesOutput {
  public:
    BytesOutput() = default;
    ~BytesOutput() { Py_XDECREF(bytes_); }
    BytesOutput(const BytesOutput&) = delete;
    BytesOutput& operator=(const BytesOutput&) = delete;

    OutputStorage storage() noexcept { return OutputStorage{this, &resize}; }

    /// Take the Writer's content out as a bytes object of exactly its size; the Writer
    /// starts a fresh buffer on its next write. New reference, or nullptr with an exception.
    PyObject* take(Writer& writer) {
        std::size_t size = 0;
        writer.release(&size);
        PyObject* result = bytes_;
        bytes_ = nullptr;
        if (!result) return PyBytes_FromStringAndSize(nullptr, 0);
        if (_PyBytes_Resize(&result, static_cast<Py_ssize_t>(size)) < 0) return nullptr;
        return result;
    }

  private:
    static char* resize(void* context, char* data, std::size_t used, std::size_t capacity) {
        auto* self = static_cast<BytesOutput*>(context);
        (void)data;
        (void)used;
        if (capacity == 0) {
            Py_CLEAR(self->bytes_);
            return nullptr;
        }
        if (capacity > static_cast<std::size_t>(PY_SSIZE_T_MAX)) return nullptr;
        if (!self->bytes_) {
            self->bytes_ = PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(capacity));
        } else if (_PyBytes_Resize(&self->bytes_, static_cast<Py_ssize_t>(capacity)) < 0) {
            self->bytes_ = nullptr; // _PyBytes_Resize freed it
        }
        if (!self->bytes_) {
            PyErr_Clear(); // the Writer reports out_of_memory itself
            return nullptr;
        }
        return PyBytes_AS_STRING(self->bytes_);
    }

    PyObject* bytes_ = nullptr;
};

} // namespace picklex::py
