// src/python/unpickler_source.cpp: reading a pickle from a Python file object.
#include "unpickler_source.hpp"

#include "module_state.hpp"

#include <algorithm>
#include <cstring>

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

} // namespace

bool FileMethods::lookup(PyObject* file) {
    const Names& names = state().names;
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

FileSource::FileSource(PyObject* read, PyObject* readline, PyObject* readinto, PyObject* peek,
                       PyObject** peek_slot) noexcept
    : read_(Ref::borrow(read)), readline_(Ref::borrow(readline)),
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
        char* dest = scratch_.data() + have;
        std::size_t got = 0;
        if (readinto_) {
            Ref view = Ref::steal(PyMemoryView_FromMemory(dest, static_cast<Py_ssize_t>(step),
                                                          PyBUF_WRITE));
            if (!view) return fail(Errc::external);
            Ref count = Ref::steal(PyObject_CallOneArg(readinto_.get(), view.get()));
            // The scratch memory may move later; a view kept by the stream must not outlive it.
            Ref released = Ref::steal(PyObject_CallMethod(view.get(), "release", nullptr));
            if (!released) PyErr_Clear();
            if (!count) return fail(Errc::external);
            const Py_ssize_t size = PyLong_AsSsize_t(count.get());
            if (size == -1 && PyErr_Occurred()) return fail(Errc::external);
            if (size < 0) {
                PyErr_SetString(PyExc_ValueError, "readinto() returned negative size");
                return fail(Errc::external);
            }
            if (static_cast<std::size_t>(size) > step) {
                PyErr_SetString(PyExc_ValueError, "readinto() returned more than requested");
                return fail(Errc::external);
            }
            got = static_cast<std::size_t>(size);
        } else {
            Ref data = Ref::steal(call_with_size(read_.get(), step));
            if (!data) return fail(Errc::external);
            Py_buffer view;
            if (PyObject_GetBuffer(data.get(), &view, PyBUF_CONTIG_RO) < 0)
                return fail(Errc::external);
            got = std::min(static_cast<std::size_t>(view.len), step);
            std::memcpy(dest, view.buf, got);
            PyBuffer_Release(&view);
        }
        have += got;
        scratch_.truncate(have);
        if (got < step) return fail(Errc::truncated);
    }
    return true;
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
