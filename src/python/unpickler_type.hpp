// src/python/unpickler_type.hpp: the picklex.Unpickler type, as the module code sees it.
#pragma once

#include "python.hpp"

namespace picklex::py {

/// The picklex.Unpickler type object (ready after ready_unpickler_types()).
PyTypeObject* unpickler_type();

/// PyType_Ready for Unpickler and UnpicklerMemoProxy; false with an exception set.
bool ready_unpickler_types();

} // namespace picklex::py
