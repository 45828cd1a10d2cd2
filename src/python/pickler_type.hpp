// src/python/pickler_type.hpp: the Python Pickler type, made per interpreter.
#pragma once

#include "python.hpp"

namespace picklex::py {

struct ModuleState;

/// Create the Pickler and PicklerMemoProxy heap types into `st` and add Pickler to
/// `module`. False with an exception set.
bool add_pickler_types(PyObject* module, ModuleState& st);

} // namespace picklex::py
