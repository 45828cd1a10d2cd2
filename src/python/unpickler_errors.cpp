// src/python/unpickler_errors.cpp: decoder errors as the exceptions _pickle raises.
#include <string>

#include "module_state.hpp"
#include "picklex/opcodes.hpp"
#include "unpickler_load.hpp"

namespace picklex::py {

namespace {

/// The exception type CPython's _pickle raises for a core error code at an opcode.
PyObject* exception_type(const ModuleState& st, const Error& error) {
    switch (error.code) {
    case Errc::empty_input: return PyExc_EOFError;
    case Errc::unsupported_protocol:
    case Errc::bad_memo_key: return PyExc_ValueError;
    case Errc::too_large: return PyExc_OverflowError;
    case Errc::bad_argument:
        // GET/PUT parse their key with int(); its complaint is a ValueError.
        if (error.opcode == static_cast<int>(Op::GET) || error.opcode == static_cast<int>(Op::PUT))
            return PyExc_ValueError;
        return st.UnpicklingError;
    default: return st.UnpicklingError;
    }
}

} // namespace

void raise_load_error(const ModuleState& st, const Error& error, PyObject* own_type) {
    if (error.code == Errc::external) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_SystemError, "picklex: decoder failed without an exception");
        return;
    }
    if (error.code == Errc::out_of_memory) {
        PyErr_NoMemory();
        return;
    }
    PyErr_Clear();
    PyObject* type = own_type && error.code == Errc::bad_type ? own_type : exception_type(st, error);
    std::string message = error.detail;
    // "Ran out of input" stays exactly CPython's: code compares it.
    if (error.code != Errc::empty_input) {
        if (error.code == Errc::bad_opcode) {
            message += " (at offset ";
        } else if (error.opcode >= 0) {
            message += " (at opcode ";
            message += op_name(static_cast<std::uint8_t>(error.opcode));
            message += ", offset ";
        }
        if (error.opcode >= 0) {
            message += std::to_string(error.offset);
            message += ')';
        }
    }
    // Details quote pickle bytes, which need not be UTF-8.
    PyObject* text = PyUnicode_DecodeUTF8(message.data(), static_cast<Py_ssize_t>(message.size()),
                                          "backslashreplace");
    if (!text) return;
    PyErr_SetObject(type, text);
    Py_DECREF(text);
}

} // namespace picklex::py
