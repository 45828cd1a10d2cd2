// src/python/pickler_module.cpp: registers the encoding side of the front (placeholder).
#include "module_api.hpp"

namespace picklex::py {

bool add_pickler_api(PyObject*) { return true; }

} // namespace picklex::py
