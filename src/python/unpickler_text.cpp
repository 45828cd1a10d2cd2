// src/python/unpickler_text.cpp: str payloads (UTF-8, surrogates allowed) past their ASCII prefix.
#include "unpickler_ops.hpp"

namespace picklex::py {

namespace {

/// A str of scan.length code points from valid text: the shared one-character string for
/// U+0080-U+00FF, as CPython returns, else a new string that `decode(units)` fills (it
/// writes the terminator too, for which PyUnicode_New leaves room).
template <typename Decode>
PyObject* new_str(const char* p, const detail::Utf8Scan& scan, Decode decode) {
    if (scan.length == 1 && scan.max_char == 0xFF) {
        const auto lead = static_cast<unsigned char>(p[0]), next = static_cast<unsigned char>(p[1]);
        return PyUnicode_FromOrdinal(((lead & 3) << 6) | (next & 0x3F));
    }
    PyObject* str = PyUnicode_New(static_cast<Py_ssize_t>(scan.length), scan.max_char);
    if (!str) return nullptr;
    switch (PyUnicode_KIND(str)) {
    case PyUnicode_1BYTE_KIND:
        decode(PyUnicode_1BYTE_DATA(str));
        break;
    case PyUnicode_2BYTE_KIND:
        decode(PyUnicode_2BYTE_DATA(str));
        break;
    default:
        decode(PyUnicode_4BYTE_DATA(str));
        break;
    }
    return str;
}

/// Malformed text: CPython's decoder raises the error it would raise.
PyObject* decode_error(const char* p, std::size_t n) {
    return PyUnicode_DecodeUTF8(p, static_cast<Py_ssize_t>(n), "surrogatepass");
}

} // namespace

PyObject* PyOps::make_str_utf8_wide(const char* p, std::size_t n, std::size_t ascii) {
    if (n <= detail::kSmallText) {
        const detail::SmallText text(p, n);
        const detail::Utf8Scan scan = detail::scan_small(text, n);
        if (!scan.valid) return decode_error(p, n);
        return new_str(p, scan,
                       [&](auto* out) { detail::decode_small(text, n, scan.length, out); });
    }
    const detail::Utf8Scan scan = detail::scan_utf8(p, n, ascii);
    if (!scan.valid) return decode_error(p, n);
    return new_str(p, scan, [&](auto* out) { detail::decode_utf8(p, n, out, ascii); });
}

} // namespace picklex::py
