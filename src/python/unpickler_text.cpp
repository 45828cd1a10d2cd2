// src/python/unpickler_text.cpp: str payloads (UTF-8, surrogates allowed) past their ASCII prefix.
#include "unpickler_ops.hpp"

namespace picklex::py {

PyObject* PyOps::make_str_utf8_wide(const char* p, std::size_t n, std::size_t ascii) {
    const detail::Utf8Scan scan = detail::scan_utf8(p, n, ascii);
    // Malformed text: CPython's decoder raises the error it would raise.
    if (!scan.valid) return PyUnicode_DecodeUTF8(p, static_cast<Py_ssize_t>(n), "surrogatepass");
    if (scan.length == 1 && scan.max_char == 0xFF) {
        // The shared one-character string, as CPython's.
        const auto lead = static_cast<unsigned char>(p[0]), next = static_cast<unsigned char>(p[1]);
        return PyUnicode_FromOrdinal(((lead & 3) << 6) | (next & 0x3F));
    }
    PyObject* str = PyUnicode_New(static_cast<Py_ssize_t>(scan.length), scan.max_char);
    if (!str) return nullptr;
    // PyUnicode_New leaves room for the terminator, which decode_utf8 writes.
    switch (PyUnicode_KIND(str)) {
    case PyUnicode_1BYTE_KIND:
        detail::decode_utf8(p, n, PyUnicode_1BYTE_DATA(str), ascii);
        break;
    case PyUnicode_2BYTE_KIND:
        detail::decode_utf8(p, n, PyUnicode_2BYTE_DATA(str), ascii);
        break;
    default:
        detail::decode_utf8(p, n, PyUnicode_4BYTE_DATA(str), ascii);
        break;
    }
    return str;
}

} // namespace picklex::py
