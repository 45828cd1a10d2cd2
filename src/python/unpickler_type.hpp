// src/python/unpickler_type.hpp: the picklex.Unpickler type, made per interpreter.
#pragma once

#include "python.hpp"

namespace picklex::py {

struct ModuleState;

/// Create the Unpickler and UnpicklerMemoProxy heap types into `st` and add Unpickler to
/// `module`. False with an exception set.
bool add_unpickler_types(PyObject* module, ModuleState& st);

} // namespace picklex::py
