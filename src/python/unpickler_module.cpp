// src/python/unpickler_module.cpp: registers the decoding side of the front.
// (Placeholder until the Unpickler lands; owned by the decoder work.)
#include "module_api.hpp"

namespace picklex::py {

bool add_unpickler_api(PyObject*) { return true; }

} // namespace picklex::py
