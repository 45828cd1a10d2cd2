// src/python/module_state.hpp: the stdlib objects and interned names the front uses.
//
// The extension reuses the types the ecosystem already speaks: pickle's exception classes,
// pickle.PickleBuffer, copyreg's registries and _compat_pickle's name tables. They are
// fetched once at import and held here.
#pragma once

#include "python.hpp"

namespace picklex::py {

// Interned attribute and method names, created once at import.
#define PICKLEX_INTERNED_NAMES(X)                                                                  \
    X(write) X(read) X(readline) X(readinto) X(peek) X(persistent_id) X(persistent_load)           \
    X(dispatch_table) X(reducer_override) X(find_class) X(__reduce_ex__) X(__reduce__)             \
    X(__getstate__) X(__setstate__) X(__getnewargs_ex__) X(__getnewargs__) X(__newobj__)           \
    X(__newobj_ex__) X(__name__) X(__qualname__) X(__module__) X(__class__) X(__new__)             \
    X(__dict__) X(__main__) X(items) X(latin1) X(encode) X(modules) X(append) X(extend) X(add)     \
    X(__slotnames__) X(copyreg) X(builtins) X(getattr) X(__import__) X(__spec__) X(_initializing) X(__getinitargs__)

struct Names {
#define PICKLEX_X(name) PyObject* name = nullptr;
    PICKLEX_INTERNED_NAMES(PICKLEX_X)
#undef PICKLEX_X
};

struct ModuleState {
    // pickle's own exception classes, so `except pickle.UnpicklingError` catches ours.
    PyObject* PickleError = nullptr;
    PyObject* PicklingError = nullptr;
    PyObject* UnpicklingError = nullptr;

    // copyreg.dispatch_table, {type: reduce function}
    PyObject* dispatch_table = nullptr;
    // copyreg._extension_registry {(module, name): code}, _inverted_registry {code: (module,
    // name)}, _extension_cache {code: object}
    PyObject* extension_registry = nullptr;
    PyObject* inverted_registry = nullptr;
    PyObject* extension_cache = nullptr;

    // _compat_pickle tables for protocol < 3 name fixing
    PyObject* name_mapping_2to3 = nullptr;
    PyObject* import_mapping_2to3 = nullptr;
    PyObject* name_mapping_3to2 = nullptr;
    PyObject* import_mapping_3to2 = nullptr;

    PyObject* codecs_encode = nullptr;     // codecs.encode, bytes at protocol < 3
    PyObject* builtins_getattr = nullptr;  // getattr, nested names at protocol < 4
    PyObject* functools_partial = nullptr; // NEWOBJ_EX at protocol < 4
    PyObject* copyreg_reconstructor = nullptr; // copyreg._reconstructor
    PyObject* copyreg_newobj = nullptr;        // copyreg.__newobj__
    PyObject* builtins_import = nullptr;       // builtins.__import__ as the interpreter set it

    PyObject* empty_tuple = nullptr;
    int default_protocol = 4; // pickle.DEFAULT_PROTOCOL of the running interpreter

    Names names;
};

/// The process-wide state, valid after the module is imported.
ModuleState& state() noexcept;

/// Fill state(); returns false with a Python exception set on failure.
bool init_state();

} // namespace picklex::py
