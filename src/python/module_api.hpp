// src/python/module_api.hpp: what each part of the front adds to the _picklex module.
#pragma once

#include "python.hpp"

#include "picklex/error.hpp"

namespace picklex::py {

/// Pickler, PicklerMemoProxy, dump(), dumps(). Returns false with an exception set.
bool add_pickler_api(PyObject* module);

/// Unpickler, UnpicklerMemoProxy, load(), loads(). Returns false with an exception set.
bool add_unpickler_api(PyObject* module);

/// Raise the Python exception the stdlib raises for a core error (unless one is already
/// set, as for Errc::external), with the opcode and offset in the message.
/// `unpickling` picks UnpicklingError over PicklingError for the generic cases.
void raise_core_error(const Error& error, bool unpickling);

} // namespace picklex::py
