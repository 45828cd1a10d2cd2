// src/python/unpickler_load.hpp: one load, from a source through the machine to a result
// or a Python exception. Shared by loads(), load() and Unpickler.load().
#pragma once

#include "python.hpp"

#include <new>

#include "picklex/error.hpp"
#include "picklex/reader.hpp"
#include "unpickler_ops.hpp"

namespace picklex::py {

/// Raise the exception CPython's _pickle raises for `error`, with the opcode and offset
/// appended to the message of the errors the decoder itself detects. `own_type` is the
/// exception type PyOps chose for an error it reported (see PyOps::own_error_type).
void raise_load_error(const ModuleState& st, const Error& error, PyObject* own_type);

/// Decode one pickle from `source` with `settings`. Returns a new reference, or null with a
/// Python exception set. The machine's memo is kept; its stack is emptied either way.
template <class Source>
PyObject* run_load(PyMachine& machine, Source& source, LoadSettings settings) {
    PyObject* result = nullptr;
    try {
        machine.begin();
        machine.ops().configure(std::move(settings));
        Reader<Source, PyMachine> reader(source, machine);
        machine.ops().gc().begin();
        const bool ok = reader.run();
        machine.ops().gc().end();
        if (ok) {
            result = machine.take_result();
        } else {
            raise_load_error(machine.ops().st(), machine.error(), machine.ops().own_error_type());
        }
    } catch (const std::bad_alloc&) {
        machine.ops().gc().end();
        Py_CLEAR(result);
        PyErr_NoMemory();
    }
    machine.ops().unconfigure();
    // What is left on the stack goes now; releasing can run __del__, which must not see
    // (or clobber) the exception being raised.
    if (machine.stack_size() || machine.mark_depth()) {
        PyObject *type, *value, *traceback;
        PyErr_Fetch(&type, &value, &traceback);
        machine.reset();
        PyErr_Restore(type, value, traceback);
    }
    return result;
}

} // namespace picklex::py
