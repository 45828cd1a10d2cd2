// src/python/args.hpp: vectorcall argument parsing for the module functions.
//
// dumps()/loads() run once per message in the small-message workloads, where tuple+dict
// argument parsing would cost as much as pickling a small dict. This parses the
// METH_FASTCALL | METH_KEYWORDS convention directly.
#pragma once

#include "python.hpp"

#include <cstring>

namespace picklex::py {

/// One parameter: its name, whether it can only be passed by keyword, whether it is required.
struct Param {
    const char* name;
    bool keyword_only = false;
    bool required = false;
};

/// Fill `out[i]` (borrowed; nullptr when not passed) for each parameter from a vectorcall
/// argument list. Raises TypeError like the builtins do and returns false on bad calls.
template <std::size_t N>
bool parse_args(const char* function, const Param (&params)[N], PyObject* const* args,
                Py_ssize_t nargs, PyObject* kwnames, PyObject* (&out)[N]) {
    for (std::size_t i = 0; i < N; ++i) out[i] = nullptr;
    std::size_t positional = 0;
    while (positional < N && !params[positional].keyword_only) ++positional;
    if (static_cast<std::size_t>(nargs) > positional) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %zu positional argument%s (%zd given)",
                     function, positional, positional == 1 ? "" : "s", nargs);
        return false;
    }
    for (Py_ssize_t i = 0; i < nargs; ++i) out[i] = args[i];
    if (kwnames) {
        const Py_ssize_t nkw = PyTuple_GET_SIZE(kwnames);
        for (Py_ssize_t k = 0; k < nkw; ++k) {
            PyObject* key = PyTuple_GET_ITEM(kwnames, k);
            const char* name = PyUnicode_AsUTF8(key);
            if (!name) return false;
            std::size_t i = 0;
            while (i < N && std::strcmp(params[i].name, name) != 0) ++i;
            if (i == N) {
                PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%s'",
                             function, name);
                return false;
            }
            if (out[i]) {
                PyErr_Format(PyExc_TypeError, "argument for %s() given by name ('%s') and position (%zu)",
                             function, name, i + 1);
                return false;
            }
            out[i] = args[nargs + k];
        }
    }
    for (std::size_t i = 0; i < N; ++i) {
        if (params[i].required && !out[i]) {
            PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s' (pos %zu)",
                         function, params[i].name, i + 1);
            return false;
        }
    }
    return true;
}

/// A bool parameter as the builtins read it: truthiness, default when absent.
inline int truth_or(PyObject* value, bool fallback) {
    return value ? PyObject_IsTrue(value) : static_cast<int>(fallback);
}

} // namespace picklex::py
