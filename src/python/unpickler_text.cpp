// src/python/unpickler_text.cpp: str payloads (UTF-8, surrogates allowed) past their ASCII prefix.
#include "unpickler_ops.hpp"

namespace picklex::py {

PyObject* PyOps::make_str_utf8_wide(const char* p, std::size_t n, std::size_t ascii) {
    const detail::Utf8Scan scan = detail::scan_utf8(p, n, ascii);
    // Malformed text: CPython's decoder raises the error it would raise.
    if (!scan.valid) return PyUnicode_DecodeUTF8(p, static_cast<Py_ssize_t>(n), "surrogatepass");
    if (scan.length == 1 && scan.max_char == 0xFF) {
        Py_UCS1 c;
        detail::decode_utf8(p, n, &c);
        return PyUnicode_FromOrdinal(c); // the shared one-character string, as CPython's
    }
    PyObject* str = PyUnicode_New(static_cast<Py_ssize_t>(scan.length), scan.max_char);
    if (!str) return nullptr;
    switch (PyUnicode_KIND(str)) {
    case PyUnicode_1BYTE_KIND: detail::decode_utf8(p, n, PyUnicode_1BYTE_DATA(str)); break;
    case PyUnicode_2BYTE_KIND: detail::decode_utf8(p, n, PyUnicode_2BYTE_DATA(str)); break;
    default: detail::decode_utf8(p, n, PyUnicode_4BYTE_DATA(str)); break;
    }
    return str;
}

} // namespace picklex::py
