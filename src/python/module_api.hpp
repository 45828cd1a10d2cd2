// src/python/module_api.hpp: what each part of the front adds to the _picklex module.
#pragma once

#include "python.hpp"

#include "picklex/error.hpp"

namespace picklex::py {

struct ModuleState;

/// Pickler, dump(), dumps(), and the Pickler's types in `st`. False with an exception set.
bool add_pickler_api(PyObject* module, ModuleState& st);

/// Unpickler, load(), loads(), and the Unpickler's types in `st`. False with an exception set.
bool add_unpickler_api(PyObject* module, ModuleState& st);

/// Free the spare PicklerCore the module functions keep (module clear).
void clear_spare_pickler(ModuleState& st) noexcept;

/// Raise the Python exception the stdlib raises for a core error (unless one is already
/// set, as for Errc::external), with the opcode and offset in the message.
/// `unpickling` picks UnpicklingError over PicklingError for the generic cases.
void raise_core_error(const ModuleState& st, const Error& error, bool unpickling);

} // namespace picklex::py
