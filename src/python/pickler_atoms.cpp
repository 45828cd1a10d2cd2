// src/python/pickler_atoms.cpp: ints, floats, str, bytes, bytearray and PickleBuffer.
#include <vector>

#include "module_state.hpp"
#include "pickler.hpp"

namespace picklex::py {

bool PicklerCore::save_long(PyObject* obj) {
    long long small;
    if (compact_long_value(obj, small)) return writer.save_int(small) || writer_failed();
    int overflow = 0;
    const long long value = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (value == -1 && PyErr_Occurred()) return false;
    if (!overflow) return writer.save_int(value) || writer_failed();
    return save_big_long(obj);
}

bool PicklerCore::save_big_long(PyObject* obj) {
    if (proto < 2) {
        // Protocols 0 and 1 spell big ints in decimal with Python 2's trailing 'L'.
        Ref repr = Ref::steal(PyObject_Repr(obj));
        if (!repr) return false;
        Py_ssize_t size = 0;
        const char* digits = PyUnicode_AsUTF8AndSize(repr.get(), &size);
        if (!digits) return false;
        return writer.save_long_text({digits, static_cast<std::size_t>(size)}) || writer_failed();
    }
    // One byte more than the magnitude needs (the sign bit), trimmed below when the top
    // byte turns out to be pure sign extension: the same length rule as CPython.
    const std::size_t nbits = _PyLong_NumBits(obj);
    if (nbits == static_cast<std::size_t>(-1) && PyErr_Occurred()) return false;
    std::size_t nbytes = (nbits >> 3) + 1;
    if (nbytes > 0x7fffffff) {
        PyErr_SetString(PyExc_OverflowError, "int too large to pickle");
        return false;
    }
    std::vector<unsigned char> bytes(nbytes);
#if PY_VERSION_HEX >= 0x030D0000
    if (_PyLong_AsByteArray(reinterpret_cast<PyLongObject*>(obj), bytes.data(), nbytes, 1, 1, 1) < 0)
#else
    if (_PyLong_AsByteArray(reinterpret_cast<PyLongObject*>(obj), bytes.data(), nbytes, 1, 1) < 0)
#endif
        return false;
    if (_PyLong_Sign(obj) < 0 && nbytes > 1 && bytes[nbytes - 1] == 0xff && (bytes[nbytes - 2] & 0x80))
        --nbytes;
    return writer.save_long_bytes(bytes.data(), nbytes) || writer_failed();
}

bool PicklerCore::save_float(PyObject* obj) {
    return writer.save_float(PyFloat_AS_DOUBLE(obj)) || writer_failed();
}

bool PicklerCore::save_unicode(PyObject* obj) {
    if (writer.bin()) {
        const auto length = static_cast<std::size_t>(PyUnicode_GET_LENGTH(obj));
        // ASCII is already UTF-8. Other text goes through the UTF-8 copy the str caches, as
        // with the stdlib (same memory, and fast when the same strings are pickled again);
        // lone surrogates, which strict UTF-8 refuses, are encoded surrogatepass directly.
        bool written;
        if (PyUnicode_IS_ASCII(obj)) {
            written = writer.save_unicode_utf8(static_cast<const char*>(PyUnicode_DATA(obj)), length);
        } else {
            Py_ssize_t size = 0;
            const char* utf8 = PyUnicode_AsUTF8AndSize(obj, &size);
            if (utf8) {
                written = writer.save_unicode_utf8(utf8, static_cast<std::size_t>(size));
            } else {
                PyErr_Clear();
                written = writer.save_unicode_units(PyUnicode_KIND(obj), PyUnicode_DATA(obj), length);
            }
        }
        if (!written) return writer_failed();
    } else if (!writer.save_unicode_text(PyUnicode_KIND(obj), PyUnicode_DATA(obj),
                                         static_cast<std::size_t>(PyUnicode_GET_LENGTH(obj)))) {
        return writer_failed();
    }
    return memo_put(obj);
}

bool PicklerCore::save_bytes(PyObject* obj) {
    if (proto < 3) {
        // No bytes opcode before protocol 3: rebuild with codecs.encode(text, 'latin1'),
        // which old unpicklers understand too.
        Ref reduce_value;
        if (PyBytes_GET_SIZE(obj) == 0) {
            reduce_value = Ref::steal(Py_BuildValue("(O())", reinterpret_cast<PyObject*>(&PyBytes_Type)));
        } else {
            Ref text = Ref::steal(
                PyUnicode_DecodeLatin1(PyBytes_AS_STRING(obj), PyBytes_GET_SIZE(obj), "strict"));
            if (!text) return false;
            reduce_value = Ref::steal(Py_BuildValue("(O(OO))", st().codecs_encode, text.get(),
                                                    st().names.latin1));
        }
        return reduce_value && save_reduce(reduce_value.get(), obj);
    }
    if (!writer.save_bytes(PyBytes_AS_STRING(obj), static_cast<std::size_t>(PyBytes_GET_SIZE(obj)),
                           obj))
        return writer_failed();
    return memo_put(obj);
}

bool PicklerCore::save_bytearray(PyObject* obj) {
    if (proto < 5) {
        Ref reduce_value;
        PyObject* type = reinterpret_cast<PyObject*>(&PyByteArray_Type);
        if (PyByteArray_GET_SIZE(obj) == 0) {
            reduce_value = Ref::steal(Py_BuildValue("(O())", type));
        } else {
            Ref copy = Ref::steal(PyBytes_FromObject(obj));
            if (!copy) return false;
            reduce_value = Ref::steal(Py_BuildValue("(O(O))", type, copy.get()));
        }
        return reduce_value && save_reduce(reduce_value.get(), obj);
    }
    if (!writer.save_bytearray(PyByteArray_AS_STRING(obj),
                               static_cast<std::size_t>(PyByteArray_GET_SIZE(obj)), obj))
        return writer_failed();
    return memo_put(obj);
}

bool PicklerCore::save_picklebuffer(PyObject* obj) {
    if (proto < 5) {
        PyErr_SetString(st().PicklingError,
#if PY_VERSION_HEX >= 0x030D0000
                        "PickleBuffer can only be pickled with protocol >= 5");
#else
                        "PickleBuffer can only pickled with protocol >= 5");
#endif
        return false;
    }
    const Py_buffer* view = PyPickleBuffer_GetBuffer(obj);
    if (!view) return false;
    if (view->suboffsets || !PyBuffer_IsContiguous(view, 'A')) {
        PyErr_SetString(st().PicklingError,
                        "PickleBuffer can not be pickled when pointing to a non-contiguous buffer");
        return false;
    }
    bool in_band = true;
    if (buffer_callback) {
        Ref answer = Ref::steal(PyObject_CallOneArg(buffer_callback.get(), obj));
        if (!answer) return false;
        const int truth = PyObject_IsTrue(answer.get());
        if (truth < 0) return false;
        in_band = truth != 0;
    }
    const auto* data = static_cast<const char*>(view->buf);
    const auto size = static_cast<std::size_t>(view->len);
    if (!in_band) return writer.save_next_buffer(view->readonly) || writer_failed();
    const bool written = view->readonly ? writer.save_bytes(data, size, obj)
                                        : writer.save_bytearray(data, size, obj);
    return (written || writer_failed()) && memo_put(obj);
}

} // namespace picklex::py
