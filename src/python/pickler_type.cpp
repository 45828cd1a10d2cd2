// src/python/pickler_type.cpp: the Python `Pickler` type and its memo proxy.
//
// Same constructor, methods and attributes as the stdlib's Pickler, subclassable with every
// hook: persistent_id, dispatch_table (class or instance level), reducer_override, memo,
// clear_memo, fast, bin.
#include <cstddef>
#include <new>

#include "memo_proxy.hpp"
#include <structmember.h> // after Python.h (from memo_proxy.hpp): T_INT, T_OBJECT_EX
#include "module_state.hpp"
#include "pickler.hpp"
#include "pickler_type.hpp"

namespace picklex::py {

namespace {

struct PicklerObject {
    PyObject_HEAD
    PicklerCore core;
};

PicklerCore& core_of(PyObject* self) { return reinterpret_cast<PicklerObject*>(self)->core; }

/// The memo as the stdlib's Pickler shows it: {id(obj): (index, obj)}.
struct PicklerMemo {
    static constexpr const char* kTypeName = "picklex.PicklerMemoProxy";
    static bool clear(PyObject* pickler) {
        core_of(pickler).clear_memo();
        return true;
    }
    static PyObject* copy(PyObject* pickler) {
        Ref result = Ref::steal(PyDict_New());
        if (!result) return nullptr;
        bool ok = true;
        core_of(pickler).memo.for_each([&](const void* key, std::size_t index) {
            if (!ok) return;
            auto* obj = static_cast<PyObject*>(const_cast<void*>(key));
            Ref id = Ref::steal(PyLong_FromVoidPtr(obj));
            Ref value = Ref::steal(Py_BuildValue("nO", static_cast<Py_ssize_t>(index), obj));
            ok = id && value && PyDict_SetItem(result.get(), id.get(), value.get()) == 0;
        });
        return ok ? result.release() : nullptr;
    }
};
using PicklerMemoProxy = MemoProxy<PicklerMemo>;

// ---- lifecycle ----

PyObject* Pickler_new(PyTypeObject* type, PyObject*, PyObject*) {
    ModuleState* st = state_of_type(type);
    if (!st) return nullptr;
    PyObject* self = type->tp_alloc(type, 0);
    if (!self) return nullptr;
    new (&core_of(self)) PicklerCore(*st);
    return self;
}

int Pickler_traverse(PyObject* self, visitproc visit, void* arg) {
    Py_VISIT(Py_TYPE(self));
    return core_of(self).traverse(visit, arg);
}

int Pickler_clear(PyObject* self) {
    core_of(self).clear_refs();
    return 0;
}

void Pickler_dealloc(PyObject* self) {
    PyTypeObject* type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    core_of(self).~PicklerCore();
    type->tp_free(self);
    // Instances own a reference to their heap type (a subclass's dealloc leaves it to us).
    Py_DECREF(type);
}

#if PICKLEX_HOOKS_ARE_METHODS
PyObject* Pickler_persistent_id(PyObject*, PyObject*) { Py_RETURN_NONE; }
#endif

/// Take persistent_id as the instance shows it now (a subclass method, an attribute).
bool refresh_persistent_id(PyObject* self) {
    PicklerCore& core = core_of(self);
#if PICKLEX_HOOKS_ARE_METHODS
    return init_hook_ref(self, core.st().names.persistent_id, Pickler_persistent_id, core.pers_func,
                         core.pers_func_self) == 0;
#else
    return init_method_ref(self, core.st().names.persistent_id, core.pers_func,
                           core.pers_func_self) == 0;
#endif
}

int Pickler_init(PyObject* self, PyObject* args, PyObject* kwargs) {
    static const char* keywords[] = {"file", "protocol", "fix_imports", "buffer_callback", nullptr};
    PyObject* file;
    PyObject* protocol = Py_None;
    int fix_imports = 1;
    PyObject* buffer_callback = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|OpO:Pickler", const_cast<char**>(keywords),
                                     &file, &protocol, &fix_imports, &buffer_callback))
        return -1;
    PicklerCore& core = core_of(self);
    if (core.dumping()) {
        // Re-initialising would free the file and hooks that the running dump() is using.
        PyErr_SetString(PyExc_RuntimeError, "Pickler.__init__() called while the pickler is dumping");
        return -1;
    }
    if (core.write) core.clear_refs(); // __init__ called again
    if (!core.set_protocol(protocol, fix_imports != 0) || !core.set_output_file(file) ||
        !core.set_buffer_callback(buffer_callback))
        return -1;
    core.clear_memo();
    core.fast = 0;
    if (!refresh_persistent_id(self)) return -1;
    // An instance-level table set before __init__ wins over a class attribute.
    if (!core.dispatch_table &&
        lookup_attr(self, core.st().names.dispatch_table, core.dispatch_table) < 0)
        return -1;
    return 0;
}

// ---- methods ----

PyObject* Pickler_dump(PyObject* self, PyObject* obj) {
    PicklerCore& core = core_of(self);
    if (!core.write) {
        PyErr_Format(core.st().PicklingError, "Pickler.__init__() was not called by %s.__init__()",
                     Py_TYPE(self)->tp_name);
        return nullptr;
    }
#if PICKLEX_HOOKS_ARE_METHODS
    // The hook is a method from 3.13 on, looked up on each dump as _pickle does.
    if (!refresh_persistent_id(self)) return nullptr;
#endif
    if (!core.dump(obj, self)) return nullptr;
    Py_RETURN_NONE;
}

PyObject* Pickler_clear_memo(PyObject* self, PyObject*) {
    core_of(self).clear_memo();
    Py_RETURN_NONE;
}

PyObject* Pickler_sizeof(PyObject* self, PyObject*) {
    const PicklerCore& core = core_of(self);
    std::size_t size = static_cast<std::size_t>(Py_TYPE(self)->tp_basicsize);
    size += core.memo.capacity() * sizeof(MemoTable::Entry);
    return PyLong_FromSize_t(size);
}

PyMethodDef Pickler_methods[] = {
    {"dump", Pickler_dump, METH_O,
     "dump($self, obj, /)\n--\n\nWrite a pickled representation of the given object to the open file."},
    {"clear_memo", Pickler_clear_memo, METH_NOARGS,
     "clear_memo($self, /)\n--\n\nClears the pickler's \"memo\".\n\n"
     "The memo is the data structure that remembers which objects the pickler has already "
     "seen, so that shared or recursive objects are pickled by reference and not by value. "
     "This method is useful when re-using picklers."},
    {"__sizeof__", Pickler_sizeof, METH_NOARGS, "Returns size in memory, in bytes."},
#if PICKLEX_HOOKS_ARE_METHODS
    {"persistent_id", Pickler_persistent_id, METH_O, nullptr},
#endif
    {nullptr, nullptr, 0, nullptr},
};

// ---- attributes ----

bool refuse_deletion(PyObject* value) {
    if (value) return false;
    PyErr_SetString(PyExc_TypeError, "attribute deletion is not supported");
    return true;
}

PyObject* Pickler_get_memo(PyObject* self, void*) {
    return PicklerMemoProxy::create(core_of(self).st().pickler_memo_type, self);
}

int Pickler_set_memo(PyObject* self, PyObject* value, void*) {
    if (refuse_deletion(value)) return -1;
    PicklerCore& core = core_of(self);
    // Build the new table aside so a bad entry leaves the old memo untouched.
    PyTypeObject* proxy_type = core.st().pickler_memo_type;
    PicklerCore fresh(core.st());
    if (PicklerMemoProxy::is_proxy(proxy_type, value)) {
        bool ok = true;
        if (PyObject* other = PicklerMemoProxy::owner_of(proxy_type, value))
            core_of(other).memo.for_each([&](const void* key, std::size_t index) {
                ok = ok && fresh.memo_set(static_cast<PyObject*>(const_cast<void*>(key)), index);
            });
        if (!ok) return -1;
    } else if (PyDict_Check(value)) {
        Py_ssize_t pos = 0;
        PyObject *key, *entry;
        while (PyDict_Next(value, &pos, &key, &entry)) {
            if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 2) {
                PyErr_SetString(PyExc_TypeError, "'memo' values must be 2-item tuples");
                return -1;
            }
            const Py_ssize_t index = PyLong_AsSsize_t(PyTuple_GET_ITEM(entry, 0));
            if (index == -1 && PyErr_Occurred()) return -1;
            if (!fresh.memo_set(PyTuple_GET_ITEM(entry, 1), static_cast<std::size_t>(index)))
                return -1;
        }
    } else {
        PyErr_Format(PyExc_TypeError,
                     "'memo' attribute must be a PicklerMemoProxy object or dict, not %.200s",
                     Py_TYPE(value)->tp_name);
        return -1;
    }
    core.clear_memo();
    fresh.memo.for_each([&](const void* key, std::size_t index) {
        // The references move from `fresh` to `core`: one incref here, one decref below.
        core.memo_set(static_cast<PyObject*>(const_cast<void*>(key)), index);
    });
    return 0;
}

#if !PICKLEX_HOOKS_ARE_METHODS
PyObject* Pickler_get_persistent_id(PyObject* self, void*) {
    PicklerCore& core = core_of(self);
    if (!core.pers_func) {
        PyErr_SetString(PyExc_AttributeError, "persistent_id");
        return nullptr;
    }
    if (core.pers_func_self) return PyMethod_New(core.pers_func.get(), core.pers_func_self);
    return core.pers_func.new_ref();
}

int Pickler_set_persistent_id(PyObject* self, PyObject* value, void*) {
    if (refuse_deletion(value)) return -1;
    if (!PyCallable_Check(value)) {
        PyErr_SetString(PyExc_TypeError, "persistent_id must be a callable taking one argument");
        return -1;
    }
    PicklerCore& core = core_of(self);
    core.pers_func_self = nullptr;
    core.pers_func = Ref::borrow(value);
    return 0;
}
#endif

// bin, fast and dispatch_table are plain members, as in _pickle: code in the wild tells the C
// pickler apart by their descriptor type (loky installs its reducers through dispatch_table
// only when it is a member descriptor). Offsets into the embedded core are taken with
// offsetof on a class without virtual members, which GCC and Clang lay out as written.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Winvalid-offsetof"
constexpr Py_ssize_t core_member(std::size_t offset_in_core) {
    return static_cast<Py_ssize_t>(offsetof(PicklerObject, core) + offset_in_core);
}
static_assert(sizeof(Ref) == sizeof(PyObject*), "dispatch_table is read as a PyObject* slot");
PyMemberDef Pickler_members[] = {
    {"bin", T_INT, core_member(offsetof(PicklerCore, bin)), 0, nullptr},
    {"fast", T_INT, core_member(offsetof(PicklerCore, fast)), 0, nullptr},
    {"dispatch_table", T_OBJECT_EX, core_member(offsetof(PicklerCore, dispatch_table)), 0, nullptr},
    {nullptr, 0, 0, 0, nullptr},
};
#pragma GCC diagnostic pop

PyGetSetDef Pickler_getsets[] = {
    {"memo", Pickler_get_memo, Pickler_set_memo, nullptr, nullptr},
#if !PICKLEX_HOOKS_ARE_METHODS
    {"persistent_id", Pickler_get_persistent_id, Pickler_set_persistent_id, nullptr, nullptr},
#endif
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

const char Pickler_doc[] =
    "Pickler(file, protocol=None, fix_imports=True, buffer_callback=None)\n--\n\n"
    "This takes a binary file for writing a pickle data stream.\n\n"
    "The optional *protocol* argument tells the pickler to use the given protocol; supported "
    "protocols are 0, 1, 2, 3, 4 and 5. The default is pickle.DEFAULT_PROTOCOL. A negative "
    "protocol selects the highest one.\n\n"
    "The *file* argument must have a write() method that accepts a single bytes argument.\n\n"
    "If *fix_imports* is true and protocol is less than 3, names of Python 3 modules are "
    "mapped to the Python 2 names, so the stream is readable by Python 2.\n\n"
    "If *buffer_callback* is None (the default), buffer views are serialized into *file* as "
    "part of the pickle stream. Otherwise it is called with each PickleBuffer; a false "
    "return value makes that buffer out-of-band. It requires protocol 5 or higher.";

PyType_Slot Pickler_slots[] = {
    {Py_tp_doc, const_cast<char*>(Pickler_doc)},
    {Py_tp_new, reinterpret_cast<void*>(Pickler_new)},
    {Py_tp_init, reinterpret_cast<void*>(Pickler_init)},
    {Py_tp_dealloc, reinterpret_cast<void*>(Pickler_dealloc)},
    {Py_tp_traverse, reinterpret_cast<void*>(Pickler_traverse)},
    {Py_tp_clear, reinterpret_cast<void*>(Pickler_clear)},
    {Py_tp_methods, Pickler_methods},
    {Py_tp_getset, Pickler_getsets},
    {Py_tp_members, Pickler_members},
    {0, nullptr},
};

PyType_Spec Pickler_spec = {
    "picklex.Pickler", sizeof(PicklerObject), 0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC | PICKLEX_TPFLAGS_IMMUTABLE,
    Pickler_slots,
};

} // namespace

bool add_pickler_types(PyObject* module, ModuleState& st) {
    if (!(st.pickler_type = make_heap_type(module, &Pickler_spec))) return false;
    if (!(st.pickler_memo_type = PicklerMemoProxy::make_type(module))) return false;
    return PyModule_AddObjectRef(module, "Pickler", reinterpret_cast<PyObject*>(st.pickler_type)) ==
           0;
}

} // namespace picklex::py
