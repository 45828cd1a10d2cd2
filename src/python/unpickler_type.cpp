// src/python/unpickler_type.cpp: the Python `Unpickler` type and its memo proxy.
//
// Same constructor, methods and attributes as the stdlib's C Unpickler: load(),
// find_class(), persistent_load (method override or attribute), memo (a proxy, settable from
// a proxy or a dict), subclassable, garbage-collected. The memo lives in the decoder's
// machine and survives between load() calls, as CPython's does.
#include <new>
#include <string>
#include <type_traits>
#include <vector>

#include "memo_proxy.hpp"
#include "module_state.hpp"
#include "unpickler_docs.hpp"
#include "unpickler_load.hpp"
#include "unpickler_source.hpp"
#include "unpickler_type.hpp"

namespace picklex::py {

namespace {

struct UnpicklerCore {
    explicit UnpicklerCore(ModuleState& state) : st(state) {}
    ModuleState& st; // this Unpickler's interpreter
    PyMachine machine;
    FileMethods file;     // set by __init__; file.read is null before
    Ref buffers;          // iterator over out-of-band buffers, or null
    Ref pers_func;        // persistent_load, or null
    PyObject* pers_func_self = nullptr; // borrowed self when pers_func is our own method
    std::string encoding = "ASCII";
    std::string errors = "strict";
    bool fix_imports = false; // as CPython's zeroed object before __init__
    bool loading = false;

    void clear_refs() noexcept {
        file = FileMethods{};
        buffers.reset();
        pers_func.reset();
        pers_func_self = nullptr;
        machine.reset();
        machine.clear_memo();
    }
};

struct UnpicklerObject {
    PyObject_HEAD
    UnpicklerCore core;
};

UnpicklerCore& core_of(PyObject* self) { return reinterpret_cast<UnpicklerObject*>(self)->core; }

/// The memo as the stdlib's Unpickler shows it: {index: obj}.
struct UnpicklerMemo {
    static constexpr const char* kTypeName = "picklex.UnpicklerMemoProxy";
    static bool clear(PyObject* unpickler) {
        core_of(unpickler).machine.clear_memo();
        return true;
    }
    static PyObject* copy(PyObject* unpickler) {
        Ref copy = Ref::steal(PyDict_New());
        if (!copy) return nullptr;
        // Snapshot the entries first: creating the keys can run code that changes the memo.
        std::vector<std::pair<std::uint64_t, PyObject*>> entries;
        try {
            core_of(unpickler).machine.memo().for_each([&](std::uint64_t index, PyObject* obj) {
                entries.emplace_back(index, Py_NewRef(obj));
            });
        } catch (const std::bad_alloc&) {
            for (auto& entry : entries) Py_DECREF(entry.second);
            return PyErr_NoMemory();
        }
        bool ok = true;
        for (auto& [index, obj] : entries) {
            if (ok) {
                Ref key = Ref::steal(PyLong_FromUnsignedLongLong(index));
                ok = key && PyDict_SetItem(copy.get(), key.get(), obj) == 0;
            }
            Py_DECREF(obj);
        }
        return ok ? copy.release() : nullptr;
    }
};
using UnpicklerMemoProxy = MemoProxy<UnpicklerMemo>;

// The decoder reads persistent_load and clears peek through the Ref's own pointer, which a
// standard-layout single-member class shares its address with.
static_assert(std::is_standard_layout_v<Ref> && sizeof(Ref) == sizeof(PyObject*));
PyObject** slot_of(Ref& ref) { return reinterpret_cast<PyObject**>(&ref); }

// ---- lifecycle ----

PyObject* Unpickler_new(PyTypeObject* type, PyObject*, PyObject*) {
    ModuleState* st = state_of_type(type);
    if (!st) return nullptr;
    PyObject* self = type->tp_alloc(type, 0);
    if (!self) return nullptr;
    new (&core_of(self)) UnpicklerCore(*st);
    return self;
}

int Unpickler_traverse(PyObject* self, visitproc visit, void* arg) {
    Py_VISIT(Py_TYPE(self));
    const UnpicklerCore& core = core_of(self);
    Py_VISIT(core.file.read.get());
    Py_VISIT(core.file.readline.get());
    Py_VISIT(core.file.readinto.get());
    Py_VISIT(core.file.peek.get());
    Py_VISIT(core.buffers.get());
    Py_VISIT(core.pers_func.get());
    // Unlike CPython's, the memo is visited too, so a cycle through it can be collected.
    return core.machine.visit([&](PyObject* obj) { return visit(obj, arg); });
}

int Unpickler_clear(PyObject* self) {
    core_of(self).clear_refs();
    return 0;
}

void Unpickler_dealloc(PyObject* self) {
    PyTypeObject* type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    core_of(self).~UnpicklerCore();
    type->tp_free(self);
    // Instances own a reference to their heap type (a subclass's dealloc leaves it to us).
    Py_DECREF(type);
}

#if PICKLEX_HOOKS_ARE_METHODS
PyObject* Unpickler_persistent_load(PyObject* self, PyObject*) {
    PyErr_SetString(core_of(self).st.UnpicklingError, kNoPersistentLoad);
    return nullptr;
}
#endif

/// Take persistent_load as the instance shows it now (a subclass method, an attribute).
bool refresh_persistent_load(PyObject* self) {
    UnpicklerCore& core = core_of(self);
#if PICKLEX_HOOKS_ARE_METHODS
    return init_hook_ref(self, core.st.names.persistent_load, Unpickler_persistent_load,
                         core.pers_func, core.pers_func_self) == 0;
#else
    return init_method_ref(self, core.st.names.persistent_load, core.pers_func,
                           core.pers_func_self) == 0;
#endif
}

int Unpickler_init_impl(PyObject* self, PyObject* args, PyObject* kwargs) {
    static const char* keywords[] = {"file", "fix_imports", "encoding", "errors", "buffers",
                                     nullptr};
    PyObject* file;
    int fix_imports = 1;
    const char* encoding = "ASCII";
    const char* errors = "strict";
    PyObject* buffers = nullptr;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|$pssO:Unpickler",
                                     const_cast<char**>(keywords), &file, &fix_imports, &encoding,
                                     &errors, &buffers))
        return -1;
    UnpicklerCore& core = core_of(self);
    if (core.file.read) core.clear_refs(); // __init__ called again: start over, memo included
    FileMethods methods;
    if (!methods.lookup(core.st, file)) return -1;
    core.file = std::move(methods);
    core.encoding = encoding;
    core.errors = errors;
    if (buffers && buffers != Py_None) {
        core.buffers = Ref::steal(PyObject_GetIter(buffers));
        if (!core.buffers) return -1;
    }
    core.fix_imports = fix_imports != 0;
    if (!refresh_persistent_load(self)) return -1;
    core.machine.ops().set_protocol(0);
    return 0;
}

// ---- methods ----

PyObject* Unpickler_load_impl(PyObject* self) {
    UnpicklerCore& core = core_of(self);
    // A subclass __init__ that does not call ours leaves no file to read.
    if (!core.file.read) {
        PyErr_Format(core.st.UnpicklingError,
                     "Unpickler.__init__() was not called by %s.__init__()",
                     Py_TYPE(self)->tp_name);
        return nullptr;
    }
    if (core.loading) {
        PyErr_SetString(PyExc_RuntimeError, "Unpickler.load() is not reentrant");
        return nullptr;
    }
#if PICKLEX_HOOKS_ARE_METHODS
    // The hook is a method from 3.13 on, looked up on each load as _pickle does.
    if (!refresh_persistent_load(self)) return nullptr;
#endif
    LoadSettings settings;
    settings.state = &core.st;
    settings.fix_imports = core.fix_imports;
    settings.encoding = core.encoding;
    settings.errors = core.errors;
    settings.encoding_is_bytes = core.encoding == "bytes";
    settings.buffers = core.buffers.get();
    settings.unpickler = self;
    // Only a subclass can override find_class (the base type has no instance dict).
    settings.call_find_class = Py_TYPE(self) != core.st.unpickler_type;
    settings.pers_func = slot_of(core.pers_func);
    settings.pers_func_self = &core.pers_func_self;
    core.loading = true;
    PyObject* result;
    {
        // The source holds its own references: the callbacks may re-run __init__.
        FileSource source(core.st, core.file.read.get(), core.file.readline.get(),
                          core.file.readinto.get(), core.file.peek.get(),
                          slot_of(core.file.peek));
        settings.adopt_payload = FileSource::adopt_payload;
        settings.payload_source = &source;
        result = run_load(core.machine, source, std::move(settings));
    }
    core.loading = false;
    return result;
}

// C++ exceptions (only std::bad_alloc can occur) never reach Python.
int Unpickler_init(PyObject* self, PyObject* args, PyObject* kwargs) {
    try {
        return Unpickler_init_impl(self, args, kwargs);
    } catch (const std::bad_alloc&) {
        PyErr_NoMemory();
        return -1;
    }
}

PyObject* Unpickler_load(PyObject* self, PyObject*) {
    try {
        return Unpickler_load_impl(self);
    } catch (const std::bad_alloc&) {
        core_of(self).loading = false;
        return PyErr_NoMemory();
    }
}

PyObject* Unpickler_find_class(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "find_class expected 2 arguments, got %zd", nargs);
        return nullptr;
    }
    const UnpicklerCore& core = core_of(self);
    return find_class(core.st, core.machine.ops().protocol(), core.fix_imports, args[0], args[1]);
}

PyObject* Unpickler_sizeof(PyObject* self, PyObject*) {
    const UnpicklerCore& core = core_of(self);
    std::size_t size = static_cast<std::size_t>(Py_TYPE(self)->tp_basicsize);
    size += core.machine.memo().dense_capacity() * sizeof(PyObject*);
    size += core.machine.stack_capacity() * sizeof(PyObject*);
    size += core.machine.marks_capacity() * sizeof(Py_ssize_t);
    if (core.encoding.capacity() > 15) size += core.encoding.capacity() + 1;
    if (core.errors.capacity() > 15) size += core.errors.capacity() + 1;
    return PyLong_FromSize_t(size);
}

PyMethodDef Unpickler_methods[] = {
    {"load", Unpickler_load, METH_NOARGS,
     "Load a pickle.\n\nRead a pickled object representation from the open file object given "
     "in\nthe constructor, and return the reconstituted object hierarchy specified\ntherein."},
    {"find_class", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(Unpickler_find_class)),
     METH_FASTCALL,
     "Return an object from a specified module.\n\nIf necessary, the module will be imported. "
     "Subclasses may override this\nmethod (e.g. to restrict unpickling of arbitrary classes "
     "and\nfunctions).\n\nThis method is called whenever a class or a function object is\n"
     "needed.  Both arguments passed are str objects."},
    {"__sizeof__", Unpickler_sizeof, METH_NOARGS, "Returns size in memory, in bytes."},
#if PICKLEX_HOOKS_ARE_METHODS
    {"persistent_load", Unpickler_persistent_load, METH_O, nullptr},
#endif
    {nullptr, nullptr, 0, nullptr},
};

// ---- attributes ----

PyObject* Unpickler_get_memo(PyObject* self, void*) {
    return UnpicklerMemoProxy::create(core_of(self).st.unpickler_memo_type, self);
}

int Unpickler_set_memo(PyObject* self, PyObject* value, void*) {
    if (!value) {
        PyErr_SetString(PyExc_TypeError, "attribute deletion is not supported");
        return -1;
    }
    // Collect the new entries first (owned), so the old memo survives any failure.
    std::vector<std::pair<std::uint64_t, PyObject*>> entries;
    auto drop = [&] {
        for (auto& entry : entries) Py_DECREF(entry.second);
    };
    try {
        PyTypeObject* proxy_type = core_of(self).st.unpickler_memo_type;
        if (UnpicklerMemoProxy::is_proxy(proxy_type, value)) {
            if (PyObject* other = UnpicklerMemoProxy::owner_of(proxy_type, value))
                core_of(other).machine.memo().for_each([&](std::uint64_t index, PyObject* obj) {
                    entries.emplace_back(index, Py_NewRef(obj));
                });
        } else if (PyDict_Check(value)) {
            Py_ssize_t pos = 0;
            PyObject *key, *obj;
            while (PyDict_Next(value, &pos, &key, &obj)) {
                if (!PyLong_Check(key)) {
                    drop();
                    PyErr_SetString(PyExc_TypeError, "memo key must be integers");
                    return -1;
                }
                const Py_ssize_t index = PyLong_AsSsize_t(key);
                if (index == -1 && PyErr_Occurred()) {
                    drop();
                    return -1;
                }
                if (index < 0) {
                    drop();
                    PyErr_SetString(PyExc_ValueError, "memo key must be positive integers.");
                    return -1;
                }
                entries.emplace_back(static_cast<std::uint64_t>(index), Py_NewRef(obj));
            }
        } else {
            PyErr_Format(PyExc_TypeError,
                         "'memo' attribute must be an UnpicklerMemoProxy object or dict, not "
                         "%.200s",
                         Py_TYPE(value)->tp_name);
            return -1;
        }
    } catch (const std::bad_alloc&) {
        drop();
        PyErr_NoMemory();
        return -1;
    }
    PyMachine& machine = core_of(self).machine;
    machine.clear_memo();
    for (std::size_t i = 0; i < entries.size(); ++i) {
        if (!machine.memo_put(entries[i].first, entries[i].second)) {
            for (std::size_t j = i + 1; j < entries.size(); ++j) Py_DECREF(entries[j].second);
            PyErr_NoMemory();
            return -1;
        }
    }
    return 0;
}

#if !PICKLEX_HOOKS_ARE_METHODS
PyObject* Unpickler_get_persistent_load(PyObject* self, void*) {
    const UnpicklerCore& core = core_of(self);
    if (!core.pers_func) {
        PyErr_SetString(PyExc_AttributeError, "persistent_load");
        return nullptr;
    }
    if (core.pers_func_self) return PyMethod_New(core.pers_func.get(), core.pers_func_self);
    return core.pers_func.new_ref();
}

int Unpickler_set_persistent_load(PyObject* self, PyObject* value, void*) {
    if (!value) {
        PyErr_SetString(PyExc_TypeError, "attribute deletion is not supported");
        return -1;
    }
    if (!PyCallable_Check(value)) {
        PyErr_SetString(PyExc_TypeError,
                        "persistent_load must be a callable taking one argument");
        return -1;
    }
    UnpicklerCore& core = core_of(self);
    core.pers_func_self = nullptr;
    core.pers_func = Ref::borrow(value);
    return 0;
}
#endif

PyGetSetDef Unpickler_getsets[] = {
    {"memo", Unpickler_get_memo, Unpickler_set_memo, nullptr, nullptr},
#if !PICKLEX_HOOKS_ARE_METHODS
    {"persistent_load", Unpickler_get_persistent_load, Unpickler_set_persistent_load, nullptr,
     nullptr},
#endif
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

const char Unpickler_doc[] =
    "Unpickler(file, *, fix_imports=True, encoding='ASCII', errors='strict', buffers=())\n--\n\n"
    "This takes a binary file for reading a pickle data stream.\n\n"
    PICKLEX_DOC_PROTOCOL_DETECTED
    PICKLEX_DOC_FILE_METHODS
    PICKLEX_DOC_PY2_OPTIONS;

PyType_Slot Unpickler_slots[] = {
    {Py_tp_doc, const_cast<char*>(Unpickler_doc)},
    {Py_tp_new, reinterpret_cast<void*>(Unpickler_new)},
    {Py_tp_init, reinterpret_cast<void*>(Unpickler_init)},
    {Py_tp_dealloc, reinterpret_cast<void*>(Unpickler_dealloc)},
    {Py_tp_traverse, reinterpret_cast<void*>(Unpickler_traverse)},
    {Py_tp_clear, reinterpret_cast<void*>(Unpickler_clear)},
    {Py_tp_methods, Unpickler_methods},
    {Py_tp_getset, Unpickler_getsets},
    {0, nullptr},
};

PyType_Spec Unpickler_spec = {
    "picklex.Unpickler", sizeof(UnpicklerObject), 0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC | PICKLEX_TPFLAGS_IMMUTABLE,
    Unpickler_slots,
};

} // namespace

bool add_unpickler_types(PyObject* module, ModuleState& st) {
    if (!(st.unpickler_type = make_heap_type(module, &Unpickler_spec))) return false;
    if (!(st.unpickler_memo_type = UnpicklerMemoProxy::make_type(module))) return false;
    return PyModule_AddObjectRef(module, "Unpickler",
                                 reinterpret_cast<PyObject*>(st.unpickler_type)) == 0;
}

} // namespace picklex::py
