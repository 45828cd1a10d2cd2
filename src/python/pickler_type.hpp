// src/python/pickler_type.hpp: access to the Python Pickler type from the module code.
#pragma once

#include "python.hpp"

namespace picklex::py {

/// The picklex.Pickler type object (ready after ready_pickler_types()).
PyTypeObject* pickler_type();

/// PyType_Ready for Pickler and PicklerMemoProxy; false with an exception set.
bool ready_pickler_types();

} // namespace picklex::py
