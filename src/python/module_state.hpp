// src/python/module_state.hpp: everything the front keeps, one copy per interpreter.
//
// The extension uses multi-phase initialisation (PEP 489) with module state (PEP 573): each
// interpreter that imports picklex gets its own ModuleState, holding its own references to
// the stdlib objects the front reuses (pickle's exceptions, copyreg's registries,
// _compat_pickle's tables), its interned names, its heap types, and the caches of pickled
// globals, certified classes and loaded atoms. Nothing that holds a Python object lives in
// static storage, so interpreters with their own GIL never share one.
//
// Code reaches the state through the object being worked on: a module function through its
// module, a Pickler/Unpickler (and so every save and load) through the pointer it took from
// its type when it was created. The lookup happens once per call, never per object.
#pragma once

#include "python.hpp"

#include <cstddef>
#include <cstdint>

namespace picklex::py {

// Interned attribute and method names, created once per interpreter.
#define PICKLEX_INTERNED_NAMES(X)                                                                  \
    X(write) X(read) X(readline) X(readinto) X(peek) X(persistent_id) X(persistent_load)           \
    X(dispatch_table) X(reducer_override) X(find_class) X(__reduce_ex__) X(__reduce__)             \
    X(__getstate__) X(__setstate__) X(__getnewargs_ex__) X(__getnewargs__) X(__newobj__)           \
    X(__newobj_ex__) X(__name__) X(__qualname__) X(__module__) X(__class__) X(__new__)             \
    X(__dict__) X(__main__) X(items) X(latin1) X(encode) X(modules) X(append) X(extend) X(add)     \
    X(__slotnames__) X(copyreg) X(builtins) X(getattr) X(__import__) X(__spec__) X(_initializing) \
    X(__getinitargs__) X(__builtins__)

struct Names {
#define PICKLEX_X(name) PyObject* name = nullptr;
    PICKLEX_INTERNED_NAMES(PICKLEX_X)
#undef PICKLEX_X
};

// ---- caches (their logic lives with their users; the storage is here) ----

/// A top-level global the pickler resolved: its name and module, re-checked on each use
/// (pickler_reduce.cpp). Every pointer is a strong reference.
struct GlobalCacheEntry {
    PyObject* obj = nullptr;
    PyObject* module_name = nullptr;
    PyObject* qualname = nullptr;
    PyObject* module = nullptr;
};

/// What object.__reduce_ex__ passes to copyreg.__newobj__ after the class.
enum class NewArgs : unsigned char {
    none,  ///< an ordinary class: no arguments
    items, ///< a namedtuple: its items, from __getnewargs__ (tuple(self))
};

/// A class whose instances may skip __reduce_ex__ (pickler_plain.cpp). The type is borrowed:
/// the entry only counts while the type's version tag, never reused, still matches.
struct Certificate {
    PyTypeObject* type = nullptr;
    unsigned int version = 0;
    Py_ssize_t slot_count = 0; ///< len(__slotnames__), which takes part in a layout check
    NewArgs new_args = NewArgs::none;
};

/// Recently loaded small ints, one object per value (unpickler_atom_cache.hpp).
struct IntCacheTable {
    static constexpr std::size_t kSlots = 1024;
    struct Entry {
        std::int64_t value = 0;
        PyObject* object = nullptr;
    };
    Entry slots[kSlots];
};

/// Recently loaded short ASCII strings (unpickler_atom_cache.hpp).
struct StrCacheTable {
    static constexpr std::size_t kSlots = 1024;
    /// Longer strings are rarely repeated keys, and comparing them costs more.
    static constexpr std::size_t kMaxLength = 24;
    struct Entry {
        std::size_t length = 0;
        PyObject* object = nullptr; // an exact, compact ASCII str of `length` characters
        std::uint64_t load = 0;     // the last load that handed it out
    };
    Entry slots[kSlots];
    std::uint64_t loads = 0; // loads started so far: each load's stamp
};

class PicklerCore;

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
    PyObject* builtins_import = nullptr; // builtins.__import__ as the interpreter set it, or null
    PyObject* namedtuple_getnewargs = nullptr; // the code every namedtuple's __getnewargs__ shares

    // io types whose remaining size a file source may ask for
    PyObject* bytes_io = nullptr;
    PyObject* buffered_reader = nullptr;
    PyObject* buffered_random = nullptr;
    PyObject* file_io = nullptr;

    PyObject* empty_tuple = nullptr;
    int default_protocol = 4; // pickle.DEFAULT_PROTOCOL of the running interpreter
    getter plain_dict_getter = nullptr; // the getter behind a plain class's __dict__

    // this module's heap types
    PyTypeObject* pickler_type = nullptr;
    PyTypeObject* unpickler_type = nullptr;
    PyTypeObject* pickler_memo_type = nullptr;
    PyTypeObject* unpickler_memo_type = nullptr;

    Names names;

    static constexpr std::size_t kGlobalCacheSlots = 256;
    static constexpr std::size_t kCertificateSlots = 256;
    GlobalCacheEntry global_cache[kGlobalCacheSlots];
    Certificate certificates[kCertificateSlots];
    IntCacheTable ints;
    StrCacheTable strs;

    // The module functions reuse one PicklerCore between calls (pickler_module.cpp).
    PicklerCore* spare_pickler = nullptr;
    bool spare_pickler_busy = false;

    ModuleState();
    ModuleState(const ModuleState&) = delete;
    ModuleState& operator=(const ModuleState&) = delete;
    ~ModuleState();

    /// Fill the state at module exec; false with a Python exception set.
    bool init();
    /// GC support for the module: the references above, caches included.
    int traverse(visitproc visit, void* arg);
    /// Drop every reference (module m_clear); the state stays usable as "empty".
    void clear();
};

/// The state of a picklex module object.
ModuleState& state_of_module(PyObject* module) noexcept;

/// The state of the picklex module that defined `type` or one of its bases; nullptr with a
/// TypeError when there is none.
ModuleState* state_of_type(PyTypeObject* type);

} // namespace picklex::py
