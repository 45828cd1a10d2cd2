// src/python/pickler_reduce.cpp: globals (classes, functions) and __reduce__ results.
#include <cstdint>
#include <optional>

#include "module_state.hpp"
#include "pickler.hpp"

namespace picklex::py {

namespace {

/// "a.b.c" -> ["a", "b", "c"]; local objects ("f.<locals>.g") cannot be found again by
/// name, so they are refused here with the stdlib's AttributeError.
PyObject* dotted_path(PyObject* name) {
    Ref dot = Ref::steal(PyUnicode_FromString("."));
    if (!dot) return nullptr;
    Ref parts = Ref::steal(PyUnicode_Split(name, dot.get(), -1));
    if (!parts) return nullptr;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(parts.get()); ++i) {
        if (PyUnicode_CompareWithASCIIString(PyList_GET_ITEM(parts.get(), i), "<locals>") == 0) {
            PyErr_Format(PyExc_AttributeError, "Can't pickle local object %R", name);
            return nullptr;
        }
    }
    return parts.release();
}

/// Walk `path` from `root`. Returns the attribute (new reference) or nullptr (with or
/// without an exception); `parent` receives the object that holds it.
PyObject* deep_attribute(PyObject* root, PyObject* path, Ref* parent) {
    Ref current = Ref::borrow(root);
    Ref holder;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(path); ++i) {
        holder = std::move(current);
        if (lookup_attr(holder.get(), PyList_GET_ITEM(path, i), current) <= 0) return nullptr;
    }
    if (parent) *parent = std::move(holder);
    return current.release();
}

/// The name of the module that holds `global`: its __module__, else a search of sys.modules.
PyObject* which_module(const ModuleState& st, PyObject* global, PyObject* path) {
    const Names& names = st.names;
    Ref module_name;
    if (lookup_attr(global, names.__module__, module_name) < 0) return nullptr;
    if (module_name && module_name.get() != Py_None) return module_name.release();

    PyObject* modules = PySys_GetObject("modules"); // borrowed
    if (!modules) {
        PyErr_SetString(PyExc_RuntimeError, "unable to get sys.modules");
        return nullptr;
    }
    auto holds_global = [&](PyObject* name, PyObject* module) -> int {
        if (module == Py_None) return 0;
        if (PyUnicode_Check(name) && PyUnicode_CompareWithASCIIString(name, "__main__") == 0)
            return 0;
        Ref candidate = Ref::steal(deep_attribute(module, path, nullptr));
        if (!candidate) return PyErr_Occurred() ? -1 : 0;
        return candidate.get() == global ? 1 : 0;
    };
    if (PyDict_CheckExact(modules)) {
        Py_ssize_t pos = 0;
        PyObject *name, *module;
        while (PyDict_Next(modules, &pos, &name, &module)) {
            const int found = holds_global(name, module);
            if (found < 0) return nullptr;
            if (found) return Py_NewRef(name);
        }
    } else {
        Ref iter = Ref::steal(PyObject_GetIter(modules));
        if (!iter) return nullptr;
        while (PyObject* raw = PyIter_Next(iter.get())) {
            Ref name = Ref::steal(raw);
            Ref module = Ref::steal(PyObject_GetItem(modules, name.get()));
            if (!module) return nullptr;
            const int found = holds_global(name.get(), module.get());
            if (found < 0) return nullptr;
            if (found) return name.release();
        }
        if (PyErr_Occurred()) return nullptr;
    }
    return Py_NewRef(names.__main__);
}

bool builtin_import_in_use(const ModuleState& st);

/// The module named `name`, as PyImport_Import gives it. An already imported, fully
/// initialized module is taken from sys.modules directly when __import__ is the builtin one:
/// that is what PyImport_Import returns then, minus a call into the import system that
/// costs more than pickling a small message.
PyObject* import_module(const ModuleState& st, PyObject* name) {
    if (st.builtins_import && PyUnicode_CheckExact(name) && builtin_import_in_use(st)) {
        // PyImport_GetModule skips (and waits for) modules still being initialized.
        PyObject* module = PyImport_GetModule(name);
        if (module || PyErr_Occurred()) return module;
    }
    return PyImport_Import(name);
}

/// Protocol < 3 with fix_imports: map Python 3 names back to Python 2's.
bool fix_imports_3to2(const ModuleState& st, Ref& module_name, Ref& global_name) {
    Ref key = Ref::steal(PyTuple_Pack(2, module_name.get(), global_name.get()));
    if (!key) return false;
    PyObject* item = PyDict_GetItemWithError(st.name_mapping_3to2, key.get());
    if (item) {
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
            PyErr_Format(PyExc_RuntimeError,
                         "_compat_pickle.REVERSE_NAME_MAPPING values should be 2-tuples, not %.200s",
                         Py_TYPE(item)->tp_name);
            return false;
        }
        PyObject* fixed_module = PyTuple_GET_ITEM(item, 0);
        PyObject* fixed_name = PyTuple_GET_ITEM(item, 1);
        if (!PyUnicode_Check(fixed_module) || !PyUnicode_Check(fixed_name)) {
            PyErr_Format(PyExc_RuntimeError,
                         "_compat_pickle.REVERSE_NAME_MAPPING values should be pairs of str, "
                         "not (%.200s, %.200s)",
                         Py_TYPE(fixed_module)->tp_name, Py_TYPE(fixed_name)->tp_name);
            return false;
        }
        module_name = Ref::borrow(fixed_module);
        global_name = Ref::borrow(fixed_name);
        return true;
    }
    if (PyErr_Occurred()) return false;
    item = PyDict_GetItemWithError(st.import_mapping_3to2, module_name.get());
    if (item) {
        if (!PyUnicode_Check(item)) {
            PyErr_Format(PyExc_RuntimeError,
                         "_compat_pickle.REVERSE_IMPORT_MAPPING values should be strings, not %.200s",
                         Py_TYPE(item)->tp_name);
            return false;
        }
        module_name = Ref::borrow(item);
    }
    return !PyErr_Occurred();
}

/// A module or global name for the GLOBAL text opcode: UTF-8 at protocol 3, else ASCII.
PyObject* encode_global_line(const ModuleState& st, PyObject* text, int proto, const char* what) {
    PyObject* encoded = proto == 3 ? PyUnicode_AsUTF8String(text) : PyUnicode_AsASCIIString(text);
    if (!encoded && PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) {
        PyErr_Format(st.PicklingError, "can't pickle %s identifier '%S' using pickle protocol %i",
                     what, text, proto);
    }
    return encoded;
}

} // namespace

/// A global found by name: the module that holds it and how to spell it.
struct ResolvedGlobal {
    Ref module_name;
    Ref global_name;
    Ref module;
    Ref parent;   ///< object holding the last name part (the module for top-level names)
    Ref lastname; ///< last part of the dotted name
};

namespace {

/// Resolving a global costs two attribute reads that allocate (for extension types), a
/// module lookup and an attribute walk; a message with a few classes in it pays that on
/// every dumps(). Top-level globals resolved once are remembered here (each entry holds a
/// reference to its object, so the address cannot be reused) and re-checked on each use
/// with dictionary lookups only: the same __module__/__qualname__, the same module in
/// sys.modules under the builtin __import__, the same object under that name.
GlobalCacheEntry& global_cache_slot(ModuleState& st, PyObject* obj) {
    return st.global_cache[(reinterpret_cast<std::uintptr_t>(obj) >> 4) %
                           ModuleState::kGlobalCacheSlots];
}

bool builtin_import_in_use(const ModuleState& st) {
    PyObject* builtins = PyEval_GetBuiltins(); // borrowed
    if (!builtins) return false;
    PyObject* current = PyDict_GetItemWithError(builtins, st.names.__import__);
    if (!current) PyErr_Clear();
    return current && current == st.builtins_import;
}

/// A cache entry taken out of the table with references of its own: checking it runs Python
/// code (a metaclass's __qualname__ or __module__ property) that may pickle another global
/// into the same slot, which frees what the slot held.
struct HeldGlobal {
    Ref obj, module_name, qualname, module;
    explicit HeldGlobal(const GlobalCacheEntry& e)
        : obj(Ref::borrow(e.obj)), module_name(Ref::borrow(e.module_name)),
          qualname(Ref::borrow(e.qualname)), module(Ref::borrow(e.module)) {}
};

/// Whether `attr` of `obj` is still exactly `expected` (a str); never raises.
bool attribute_is(PyObject* obj, PyObject* attr, PyObject* expected) {
    Ref value;
    if (lookup_attr(obj, attr, value) <= 0) {
        PyErr_Clear();
        return false;
    }
    if (value.get() == expected) return true;
    if (!PyUnicode_CheckExact(value.get())) return false;
    return PyUnicode_Compare(value.get(), expected) == 0;
}

bool still_valid(const ModuleState& st, const HeldGlobal& e) {
    // An extension type's names come from its tp_name and cannot change.
    PyObject* obj = e.obj.get();
    const bool fixed_names =
        PyType_Check(obj) && !PyType_HasFeature(reinterpret_cast<PyTypeObject*>(obj), Py_TPFLAGS_HEAPTYPE);
    const Names& names = st.names;
    if (!fixed_names && (!attribute_is(obj, names.__qualname__, e.qualname.get()) ||
                         !attribute_is(obj, names.__module__, e.module_name.get())))
        return false;
    if (!builtin_import_in_use(st)) return false;
    PyObject* module = PyDict_GetItemWithError(PyImport_GetModuleDict(), e.module_name.get());
    if (module != e.module.get() || !PyModule_CheckExact(module)) {
        PyErr_Clear();
        return false;
    }
    PyObject* found = PyDict_GetItemWithError(PyModule_GetDict(module), e.qualname.get());
    if (!found) PyErr_Clear();
    return found == obj;
}

void remember_global(ModuleState& st, PyObject* obj, const ResolvedGlobal& g) {
    if (g.parent.get() != g.module.get() || !PyUnicode_CheckExact(g.global_name.get()) ||
        !PyUnicode_CheckExact(g.module_name.get()) || !PyModule_CheckExact(g.module.get()))
        return;
    GlobalCacheEntry& e = global_cache_slot(st, obj);
    GlobalCacheEntry old = e;
    e = GlobalCacheEntry{Py_NewRef(obj), Py_NewRef(g.module_name.get()),
                         Py_NewRef(g.global_name.get()), Py_NewRef(g.module.get())};
    Py_XDECREF(old.obj);
    Py_XDECREF(old.module_name);
    Py_XDECREF(old.qualname);
    Py_XDECREF(old.module);
}

/// Find `obj` by its name (or `name`, from a __reduce__ that returned a string) and check
/// that the name leads back to it, raising the stdlib's errors otherwise.
bool resolve_global(const ModuleState& st, PyObject* obj, PyObject* name, ResolvedGlobal& g) {
    g.global_name = Ref::borrow(name);
    if (!g.global_name) {
        if (lookup_attr(obj, st.names.__qualname__, g.global_name) < 0) return false;
        if (!g.global_name) {
            g.global_name = Ref::steal(PyObject_GetAttr(obj, st.names.__name__));
            if (!g.global_name) return false;
        }
    }
    Ref path = Ref::steal(dotted_path(g.global_name.get()));
    if (!path) return false;
    g.module_name = Ref::steal(which_module(st, obj, path.get()));
    if (!g.module_name) return false;
    g.module = Ref::steal(import_module(st, g.module_name.get()));
    if (!g.module) {
        PyErr_Format(st.PicklingError, "Can't pickle %R: import of module %R failed", obj,
                     g.module_name.get());
        return false;
    }
    g.lastname = Ref::borrow(PyList_GET_ITEM(path.get(), PyList_GET_SIZE(path.get()) - 1));
    Ref found = Ref::steal(deep_attribute(g.module.get(), path.get(), &g.parent));
    if (!found) {
        PyErr_Format(st.PicklingError, "Can't pickle %R: attribute lookup %S on %S failed", obj,
                     g.global_name.get(), g.module_name.get());
        return false;
    }
    if (found.get() != obj) {
        PyErr_Format(st.PicklingError, "Can't pickle %R: it's not the same object as %S.%S", obj,
                     g.module_name.get(), g.global_name.get());
        return false;
    }
    return true;
}

} // namespace

bool PicklerCore::save_global(PyObject* obj, PyObject* name) {
    ResolvedGlobal g;
    const GlobalCacheEntry& slot = global_cache_slot(st(), obj);
    std::optional<HeldGlobal> cached;
    if (!name && slot.obj == obj) cached.emplace(slot);
    if (cached && still_valid(st(), *cached)) {
        g.module_name = std::move(cached->module_name);
        g.global_name = Ref::borrow(cached->qualname.get());
        g.lastname = std::move(cached->qualname);
        g.parent = Ref::borrow(cached->module.get());
        g.module = std::move(cached->module);
    } else {
        if (!resolve_global(st(), obj, name, g)) return false;
        if (!name) remember_global(st(), obj, g);
    }
    return write_global(obj, g);
}

bool PicklerCore::write_global(PyObject* obj, ResolvedGlobal& g) {
    const ModuleState& st = this->st();
    if (proto >= 2 && PyDict_GET_SIZE(st.extension_registry) != 0) {
        // A registered extension code replaces the name altogether.
        Ref key = Ref::steal(PyTuple_Pack(2, g.module_name.get(), g.global_name.get()));
        if (!key) return false;
        PyObject* code_obj = PyDict_GetItemWithError(st.extension_registry, key.get());
        if (code_obj) {
#if PY_VERSION_HEX >= 0x030D0000
            // 3.13 converts the code as an index and reports a bad one as a RuntimeError.
            const long code = PyLong_AsLong(code_obj);
            if (code == -1 && PyErr_Occurred()) return false;
            if (code <= 0 || code > 0x7fffffffL) {
                PyErr_Format(PyExc_RuntimeError, "extension code %ld is out of range", code);
                return false;
            }
#else
            if (!PyLong_Check(code_obj)) {
                PyErr_Format(st.PicklingError,
                             "Can't pickle %R: extension code %R isn't an integer", obj, code_obj);
                return false;
            }
            const long code = PyLong_AsLong(code_obj);
            if (code <= 0 || code > 0x7fffffffL) {
                if (!PyErr_Occurred())
                    PyErr_Format(st.PicklingError,
                                 "Can't pickle %R: extension code %ld is out of range", obj, code);
                return false;
            }
#endif
            return writer.save_ext(static_cast<std::uint32_t>(code)) || writer_failed();
        }
        if (PyErr_Occurred()) return false;
    }

    const bool top_level = g.parent.get() == g.module.get();
    Ref global_name = top_level ? Ref::borrow(g.lastname.get()) : Ref::borrow(g.global_name.get());
    if (proto >= 4) {
        if (!save(g.module_name.get()) || !save(global_name.get())) return false;
        if (!writer.write_op(Op::STACK_GLOBAL)) return writer_failed();
    } else if (top_level) {
        if (!write_global_text(g.module_name.get(), global_name.get())) return false;
    } else if (!write_nested_global(g)) {
        return false;
    }
    return memo_put(obj);
}

bool PicklerCore::write_global_text(PyObject* module, PyObject* name) {
    Ref module_name = Ref::borrow(module);
    Ref global_name = Ref::borrow(name);
    if (proto < 3 && fix_imports && !fix_imports_3to2(st(), module_name, global_name)) return false;
    Ref module_line = Ref::steal(encode_global_line(st(), module_name.get(), proto, "module"));
    if (!module_line) return false;
    Ref name_line = Ref::steal(encode_global_line(st(), global_name.get(), proto, "global"));
    if (!name_line) return false;
    const std::string_view m(PyBytes_AS_STRING(module_line.get()),
                             static_cast<std::size_t>(PyBytes_GET_SIZE(module_line.get())));
    const std::string_view n(PyBytes_AS_STRING(name_line.get()),
                             static_cast<std::size_t>(PyBytes_GET_SIZE(name_line.get())));
    return writer.save_global_text(m, n) || writer_failed();
}

bool PicklerCore::write_nested_global(const ResolvedGlobal& g) {
    const ModuleState& st = this->st();
#if PY_VERSION_HEX >= 0x030D0000
    // 3.13 spells a.b.c as getattr(getattr(GLOBAL a, 'b'), 'c'): the outer name is written
    // by name and not memoized, so a class whose qualname leads through itself still pickles.
    Ref path = Ref::steal(dotted_path(g.global_name.get()));
    if (!path) return false;
    const Py_ssize_t parts = PyList_GET_SIZE(path.get());
    for (Py_ssize_t i = 1; i < parts; ++i) {
        if (!save(st.builtins_getattr)) return false;
        if (proto < 2 && !writer.write_op(Op::MARK)) return writer_failed();
    }
    if (!write_global_text(g.module_name.get(), PyList_GET_ITEM(path.get(), 0))) return false;
    for (Py_ssize_t i = 1; i < parts; ++i) {
        if (!save(PyList_GET_ITEM(path.get(), i))) return false;
        if (!writer.write_op(proto < 2 ? Op::TUPLE : Op::TUPLE2) || !writer.write_op(Op::REDUCE))
            return writer_failed();
    }
    return true;
#else
    // Before 3.13: getattr(parent, lastname), the parent pickled (and memoized) as a global.
    Ref reduce_value = Ref::steal(
        Py_BuildValue("(O(OO))", st.builtins_getattr, g.parent.get(), g.lastname.get()));
    return reduce_value && save_reduce(reduce_value.get(), nullptr);
#endif
}

bool PicklerCore::save_type(PyObject* obj) {
    // The types of the singletons have no importable name: rebuild them as type(singleton).
    PyObject* singleton = nullptr;
    if (obj == reinterpret_cast<PyObject*>(Py_TYPE(Py_None))) singleton = Py_None;
    else if (obj == reinterpret_cast<PyObject*>(Py_TYPE(Py_Ellipsis))) singleton = Py_Ellipsis;
    else if (obj == reinterpret_cast<PyObject*>(Py_TYPE(Py_NotImplemented))) singleton = Py_NotImplemented;
    if (!singleton) return save_global(obj, nullptr);
    Ref reduce_value =
        Ref::steal(Py_BuildValue("O(O)", reinterpret_cast<PyObject*>(&PyType_Type), singleton));
    return reduce_value && save_reduce(reduce_value.get(), obj);
}

bool PicklerCore::save_reduce(PyObject* args, PyObject* obj) {
    const ModuleState& st = this->st();
    const Py_ssize_t size = PyTuple_GET_SIZE(args);
    if (size < 2 || size > 6) {
        PyErr_SetString(st.PicklingError,
                        "tuple returned by __reduce__ must contain 2 through 6 elements");
        return false;
    }
    auto item = [&](Py_ssize_t i) -> PyObject* {
        if (i >= size) return nullptr;
        PyObject* value = PyTuple_GET_ITEM(args, i);
        return value == Py_None ? nullptr : value;
    };
    PyObject* callable = PyTuple_GET_ITEM(args, 0);
    PyObject* argtup = PyTuple_GET_ITEM(args, 1);
    PyObject* state_obj = item(2);
    PyObject* listitems = item(3);
    PyObject* dictitems = item(4);
    PyObject* state_setter = item(5);

    if (!PyCallable_Check(callable)) {
        PyErr_SetString(st.PicklingError,
                        "first item of the tuple returned by __reduce__ must be callable");
        return false;
    }
    if (!PyTuple_Check(argtup)) {
        PyErr_SetString(st.PicklingError,
                        "second item of the tuple returned by __reduce__ must be a tuple");
        return false;
    }
    if (listitems && !PyIter_Check(listitems)) {
        PyErr_Format(st.PicklingError,
                     "fourth element of the tuple returned by __reduce__ must be an iterator, "
                     "not %s",
                     Py_TYPE(listitems)->tp_name);
        return false;
    }
    if (dictitems && !PyIter_Check(dictitems)) {
        PyErr_Format(st.PicklingError,
                     "fifth element of the tuple returned by __reduce__ must be an iterator, "
                     "not %s",
                     Py_TYPE(dictitems)->tp_name);
        return false;
    }
    if (state_setter && !PyCallable_Check(state_setter)) {
        PyErr_Format(st.PicklingError,
                     "sixth element of the tuple returned by __reduce__ must be a function, not %s",
                     Py_TYPE(state_setter)->tp_name);
        return false;
    }

    bool use_newobj = false, use_newobj_ex = false;
    if (proto >= 2) {
        Ref name;
        if (lookup_attr(callable, st.names.__name__, name) < 0) return false;
        if (name && PyUnicode_Check(name.get())) {
            use_newobj_ex = PyUnicode_Compare(name.get(), st.names.__newobj_ex__) == 0;
            if (!use_newobj_ex) use_newobj = PyUnicode_Compare(name.get(), st.names.__newobj__) == 0;
        }
    }

    if (use_newobj_ex) {
        if (PyTuple_GET_SIZE(argtup) != 3) {
            PyErr_Format(st.PicklingError,
                         "length of the NEWOBJ_EX argument tuple must be exactly 3, not %zd",
                         PyTuple_GET_SIZE(argtup));
            return false;
        }
        PyObject* cls = PyTuple_GET_ITEM(argtup, 0);
        PyObject* cls_args = PyTuple_GET_ITEM(argtup, 1);
        PyObject* cls_kwargs = PyTuple_GET_ITEM(argtup, 2);
        if (!PyType_Check(cls)) {
            PyErr_Format(st.PicklingError,
                         "first item from NEWOBJ_EX argument tuple must be a class, not %.200s",
                         Py_TYPE(cls)->tp_name);
            return false;
        }
        if (!PyTuple_Check(cls_args)) {
            PyErr_Format(st.PicklingError,
                         "second item from NEWOBJ_EX argument tuple must be a tuple, not %.200s",
                         Py_TYPE(cls_args)->tp_name);
            return false;
        }
        if (!PyDict_Check(cls_kwargs)) {
            PyErr_Format(st.PicklingError,
                         "third item from NEWOBJ_EX argument tuple must be a dict, not %.200s",
                         Py_TYPE(cls_kwargs)->tp_name);
            return false;
        }
        if (proto >= 4) {
            if (!save(cls) || !save(cls_args) || !save(cls_kwargs)) return false;
            if (!writer.write_op(Op::NEWOBJ_EX)) return writer_failed();
        } else {
            // Protocols 2 and 3 have no NEWOBJ_EX: partial(cls.__new__, cls, *args, **kwargs)().
            const Py_ssize_t nargs = PyTuple_GET_SIZE(cls_args);
            Ref newargs = Ref::steal(PyTuple_New(nargs + 2));
            if (!newargs) return false;
            PyObject* cls_new = PyObject_GetAttr(cls, st.names.__new__);
            if (!cls_new) return false;
            PyTuple_SET_ITEM(newargs.get(), 0, cls_new);
            PyTuple_SET_ITEM(newargs.get(), 1, Py_NewRef(cls));
            for (Py_ssize_t i = 0; i < nargs; ++i)
                PyTuple_SET_ITEM(newargs.get(), i + 2, Py_NewRef(PyTuple_GET_ITEM(cls_args, i)));
            Ref partial = Ref::steal(PyObject_Call(st.functools_partial, newargs.get(), cls_kwargs));
            if (!partial) return false;
            if (!save(partial.get()) || !save(st.empty_tuple)) return false;
            if (!writer.write_op(Op::REDUCE)) return writer_failed();
        }
    } else if (use_newobj) {
        if (PyTuple_GET_SIZE(argtup) < 1) {
            PyErr_SetString(st.PicklingError, "__newobj__ arglist is empty");
            return false;
        }
        PyObject* cls = PyTuple_GET_ITEM(argtup, 0);
        if (!PyType_Check(cls)) {
            PyErr_SetString(st.PicklingError, "args[0] from __newobj__ args is not a type");
            return false;
        }
        if (obj) {
            Ref obj_class;
            if (lookup_attr(obj, st.names.__class__, obj_class) < 0) return false;
            PyObject* actual = obj_class ? obj_class.get() : reinterpret_cast<PyObject*>(Py_TYPE(obj));
            if (actual != cls) {
                PyErr_SetString(st.PicklingError, "args[0] from __newobj__ args has the wrong class");
                return false;
            }
        }
        if (!save(cls)) return false;
        Ref newargtup = Ref::steal(PyTuple_GetSlice(argtup, 1, PyTuple_GET_SIZE(argtup)));
        if (!newargtup || !save(newargtup.get())) return false;
        if (!writer.write_op(Op::NEWOBJ)) return writer_failed();
    } else {
        if (!save(callable) || !save(argtup)) return false;
        if (!writer.write_op(Op::REDUCE)) return writer_failed();
    }

    // obj is null when the reduction is not of an object of the caller's (nested globals).
    if (obj) {
        // Reached itself while its constructor arguments were saved: use the memoized copy.
        const std::size_t index = memo.find(obj);
        if (index != MemoTable::kNotFound)
            return (writer.write_op(Op::POP) || writer_failed()) && memo_get(index);
        if (!memo_put(obj)) return false;
    }
    if (listitems && !batch_list(listitems)) return false;
    if (dictitems && !batch_dict(dictitems)) return false;
    if (state_obj) {
        if (!state_setter) {
            if (!save(state_obj)) return false;
            if (!writer.write_op(Op::BUILD)) return writer_failed();
        } else {
            // state_setter(obj, state), called for its side effect and popped.
            if (!save(state_setter) || !save(obj) || !save(state_obj)) return false;
            if (!writer.write_op(Op::TUPLE2) || !writer.write_op(Op::REDUCE) ||
                !writer.write_op(Op::POP))
                return writer_failed();
        }
    }
    return true;
}

} // namespace picklex::py
