// src/python/unpickler_source.cpp: reading a pickle from a Python file object.
#include "unpickler_source.hpp"

#include "module_state.hpp"
#include "fresh_memory.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>

#include <sys/stat.h>

namespace picklex::py {

namespace {

/// method(n) through vectorcall, as _pickle calls read() and peek().
PyObject* call_with_size(PyObject* method, std::size_t n) {
    PyObject* size = PyLong_FromSize_t(n);
    if (!size) return nullptr;
    PyObject* result = PyObject_CallOneArg(method, size);
    Py_DECREF(size);
    return result;
}

/// obj.method() as a Py_ssize_t, or -1 (no exception left behind).
Py_ssize_t call_size_method(PyObject* obj, const char* method) {
    Ref result = Ref::steal(PyObject_CallMethod(obj, method, nullptr));
    const Py_ssize_t value = result ? PyLong_AsSsize_t(result.get()) : -1;
    if (value < 0) PyErr_Clear();
    return value;
}

} // namespace

std::size_t FileSource::remaining_hint() {
    // The stream is the object the read() builtin method is bound to.
    if (!PyCFunction_Check(read_.get())) return SIZE_MAX;
    PyObject* file = PyCFunction_GET_SELF(read_.get());
    if (!file) return SIZE_MAX;
    PyObject* type = reinterpret_cast<PyObject*>(Py_TYPE(file));
    Py_ssize_t size = -1;
    if (type == st_.bytes_io) {
        // Its end through seek(0, 2), then back: getbuffer() would copy a shared buffer.
        const Py_ssize_t position = call_size_method(file, "tell");
        if (position < 0) return SIZE_MAX;
        Ref end = Ref::steal(PyObject_CallMethod(file, "seek", "ii", 0, 2));
        size = end ? PyLong_AsSsize_t(end.get()) : -1;
        Ref back = Ref::steal(PyObject_CallMethod(file, "seek", "n", position));
        if (!end || !back || size < position) {
            PyErr_Clear();
            return SIZE_MAX;
        }
        return static_cast<std::size_t>(size - position);
    } else if (type == st_.buffered_reader || type == st_.buffered_random ||
               type == st_.file_io) {
        const Py_ssize_t fd = call_size_method(file, "fileno");
        struct stat info;
        if (fd < 0 || fstat(static_cast<int>(fd), &info) != 0 || !S_ISREG(info.st_mode))
            return SIZE_MAX;
        size = static_cast<Py_ssize_t>(info.st_size);
    } else {
        return SIZE_MAX;
    }
    const Py_ssize_t position = call_size_method(file, "tell");
    if (position < 0 || position > size) return SIZE_MAX;
    return static_cast<std::size_t>(size - position);
}

bool FileMethods::lookup(const ModuleState& st, PyObject* file) {
    const Names& names = st.names;
    PyObject* found = nullptr;
    if (_PyObject_LookupAttr(file, names.peek, &found) < 0) return false;
    peek.reset(found);
    if (_PyObject_LookupAttr(file, names.readinto, &found) < 0) return false;
    readinto.reset(found);
    if (_PyObject_LookupAttr(file, names.read, &found) < 0) return false;
    read.reset(found);
    if (_PyObject_LookupAttr(file, names.readline, &found) < 0) return false;
    readline.reset(found);
    if (!read || !readline) {
        PyErr_SetString(PyExc_TypeError, "file must have 'read' and 'readline' attributes");
        return false;
    }
    return true;
}

FileSource::FileSource(const ModuleState& st, PyObject* read, PyObject* readline,
                       PyObject* readinto, PyObject* peek, PyObject** peek_slot) noexcept
    : st_(st), read_(Ref::borrow(read)), readline_(Ref::borrow(readline)),
      readinto_(Ref::borrow(readinto)), peek_(Ref::borrow(peek)), peek_slot_(peek_slot) {}

FileSource::~FileSource() { drop_object(); }

void FileSource::drop_object() noexcept {
    if (has_view_) {
        has_view_ = false;
        PyBuffer_Release(&view_);
    }
    object_.reset();
}

inline bool FileSource::use_object(PyObject* data, bool peeked, std::size_t base) {
    if (!data) return fail(Errc::external);
    if (PyBytes_CheckExact(data)) {
        // The usual result: immutable, so holding the object keeps the bytes in place.
        drop_object();
        object_ = Ref::steal(data);
        begin_ = PyBytes_AS_STRING(data);
        end = begin_ + PyBytes_GET_SIZE(data);
    } else {
        Ref owned = Ref::steal(data);
        Py_buffer view;
        if (PyObject_GetBuffer(data, &view, PyBUF_CONTIG_RO) < 0) return fail(Errc::external);
        drop_object();
        view_ = view;
        has_view_ = true;
        begin_ = static_cast<const char*>(view_.buf);
        end = begin_ + view_.len;
    }
    next = synced_ = begin_;
    peeked_ = peeked;
    base_ = base;
    return true;
}

bool FileSource::sync() {
    if (!peeked_ || next <= synced_) return true;
    // This makes a copy nobody needs, but it is how a peeked stream is advanced.
    Ref result = Ref::steal(call_with_size(read_.get(), static_cast<std::size_t>(next - synced_)));
    if (!result) return fail(Errc::external);
    synced_ = next;
    return true;
}

bool FileSource::read_chunk(char* dest, std::size_t n, std::size_t& got) {
    got = 0;
    if (!readinto_) {
        // Without readinto(): read() and copy, as _pickle does (bpo-39681).
        Ref data = Ref::steal(call_with_size(read_.get(), n));
        if (!data) return fail(Errc::external);
        Py_buffer view;
        if (PyObject_GetBuffer(data.get(), &view, PyBUF_CONTIG_RO) < 0) return fail(Errc::external);
        got = std::min(static_cast<std::size_t>(view.len), n);
        std::memcpy(dest, view.buf, got);
        PyBuffer_Release(&view);
        return true;
    }
    Ref view =
        Ref::steal(PyMemoryView_FromMemory(dest, static_cast<Py_ssize_t>(n), PyBUF_WRITE));
    if (!view) return fail(Errc::external);
    Ref count = Ref::steal(PyObject_CallOneArg(readinto_.get(), view.get()));
    // The memory may move later; a view kept by the stream must not outlive it.
    Ref released = Ref::steal(PyObject_CallMethod(view.get(), "release", nullptr));
    if (!released) PyErr_Clear();
    if (!count) return fail(Errc::external);
    const Py_ssize_t size = PyLong_AsSsize_t(count.get());
    if (size == -1 && PyErr_Occurred()) return fail(Errc::external);
    if (size < 0) {
        PyErr_SetString(PyExc_ValueError, "readinto() returned negative size");
        return fail(Errc::external);
    }
    if (static_cast<std::size_t>(size) > n) {
        PyErr_SetString(PyExc_ValueError, "readinto() returned more than requested");
        return fail(Errc::external);
    }
    got = static_cast<std::size_t>(size);
    return true;
}

bool FileSource::read_into_scratch(std::size_t n) {
    std::size_t have = scratch_.size();
    const std::size_t target = have + n;
    while (have < target) {
        // Grow with what has arrived: never ask for (or allocate) more than twice the data
        // already delivered, whatever length the pickle claims.
        const std::size_t step = std::min(target - have, std::max(kMaxBlindRead, have));
        if (!scratch_.reserve(have + step)) {
            PyErr_NoMemory();
            return fail(Errc::external);
        }
        std::size_t got = 0;
        if (!read_chunk(scratch_.data() + have, step, got)) return false;
        have += got;
        scratch_.truncate(have);
        if (got < step) return fail(Errc::truncated);
    }
    return true;
}

bool FileSource::fill_payload_object(std::size_t n) {
    // The rest of the window starts the payload; it is consumed from the stream (it may
    // only have been peeked at) and the remainder is read into the same bytes object. That
    // object is sized by what the stream says it holds, or else grows with what arrives,
    // never with what the pickle claims.
    const std::size_t have = static_cast<std::size_t>(end - next);
    const std::size_t base = offset();
    const std::size_t remaining = remaining_hint();
    std::size_t capacity = remaining != SIZE_MAX
                               ? std::min(n, have + remaining)
                               : std::min(n, have + kFirstPayloadStep);
    PyObject* payload = PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(capacity));
    if (!payload) return fail(Errc::external);
    if (have) std::memcpy(PyBytes_AS_STRING(payload), next, have);
    next = end;
    if (!sync()) {
        Py_DECREF(payload);
        return false;
    }
    drop_object();
    begin_ = next = end = synced_ = nullptr;
    base_ = base;
    std::size_t filled = have;
    while (filled < n) {
        const std::size_t step = std::min(n - filled, std::max(kFirstPayloadStep, filled));
        if (filled + step > capacity) {
            capacity = filled + step;
            if (_PyBytes_Resize(&payload, static_cast<Py_ssize_t>(capacity)) < 0)
                return fail(Errc::external); // the object is gone
        }
        char* dest = PyBytes_AS_STRING(payload) + filled;
        advise_huge_pages(dest, step);
        std::size_t got = 0;
        const bool ok = read_chunk(dest, step, got);
        filled += got;
        if (!ok || got < step) {
            Py_DECREF(payload);
            return ok ? fail(Errc::truncated) : false;
        }
    }
    object_ = Ref::steal(payload);
    begin_ = next = synced_ = PyBytes_AS_STRING(payload);
    end = begin_ + n;
    peeked_ = false;
    return true;
}

PyObject* FileSource::adopt_payload(void* source, const char* data, std::size_t size) {
    PyObject* window = static_cast<FileSource*>(source)->object_.get();
    if (!window || !PyBytes_CheckExact(window) || PyBytes_AS_STRING(window) != data ||
        static_cast<std::size_t>(PyBytes_GET_SIZE(window)) != size)
        return nullptr;
    return Py_NewRef(window); // immutable: sharing it with the decoder is safe
}

bool FileSource::fill(std::size_t n) {
    if (!peeked_ && next == end && !peek_ && n <= kMaxBlindRead) {
        // The common case without peek(): the window is used up; read exactly what is needed.
        if (!use_object(call_with_size(read_.get(), n), false, offset())) return false;
        return static_cast<std::size_t>(end - next) >= n || fail(Errc::truncated);
    }
    return fill_general(n);
}

bool FileSource::fill_general(std::size_t n) {
    if (!sync()) return false;
    // The new window starts where the decoder is. What is left of the old one is not carried
    // over, exactly as in _pickle: a peeked rest is still in the stream and is read again
    // from there; a read() rest (only a forged frame length or a read() returning more than
    // asked leaves one) is dropped, so a corrupt pickle fails here the way it fails there.
    const std::size_t base = offset();
    if (peek_ && n < kPrefetch) {
        PyObject* data = call_with_size(peek_.get(), kPrefetch);
        if (!data) {
            if (!PyErr_ExceptionMatches(PyExc_NotImplementedError)) return fail(Errc::external);
            // peek() is probably not supported by this file object: stop asking.
            PyErr_Clear();
            if (peek_slot_ && *peek_slot_ == peek_.get()) Py_CLEAR(*peek_slot_);
            peek_.reset();
        } else {
            if (!use_object(data, true, base)) return false;
            if (static_cast<std::size_t>(end - next) >= n) return true;
            // Too little ahead: read() it instead (nothing was consumed yet).
        }
    }
    if (n <= kMaxBlindRead) {
        if (!use_object(call_with_size(read_.get(), n), false, base)) return false;
        return static_cast<std::size_t>(end - next) >= n || fail(Errc::truncated);
    }
    drop_object();
    scratch_.clear();
    const bool ok = read_into_scratch(n);
    begin_ = next = synced_ = scratch_.data();
    end = begin_ + scratch_.size();
    peeked_ = false;
    base_ = base;
    return ok;
}

bool FileSource::fill_payload(std::size_t n) {
    if (n >= kDirectPayload) return fill_payload_object(n);
    // The rest of the window is the payload's start. Copy it out, consume it from the stream
    // (it may only have been peeked at), then read what is missing.
    const std::size_t have = static_cast<std::size_t>(end - next);
    if (have == 0) return fill(n);
    const std::size_t base = offset();
    if (!object_ && !has_view_ && begin_ == scratch_.data()) {
        std::memmove(scratch_.data(), next, have); // the window is the scratch buffer itself
        scratch_.truncate(have);
    } else {
        scratch_.clear();
        if (!scratch_.append(next, have)) {
            PyErr_NoMemory();
            return fail(Errc::external);
        }
    }
    next = end;
    if (!sync()) return false;
    drop_object();
    const bool ok = read_into_scratch(n - have);
    begin_ = next = synced_ = scratch_.data();
    end = begin_ + scratch_.size();
    peeked_ = false;
    base_ = base;
    return ok;
}

const char* FileSource::fill_line() {
    if (!sync()) return nullptr;
    const std::size_t base = offset();
    if (!use_object(PyObject_CallNoArgs(readline_.get()), false, base)) return nullptr;
    // readline() returning no newline means the stream ended inside the line.
    if (end == next || end[-1] != '\n') {
        fail(Errc::truncated);
        return nullptr;
    }
    return end - 1;
}

} // namespace picklex::py
