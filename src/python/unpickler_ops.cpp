// src/python/unpickler_ops.cpp: the parts of PyOps that call back into Python.
//
// Each function follows what CPython 3.11's _pickle does at the same opcode: the same checks
// in the same order, the same exception types and messages, the same protocols for
// subclasses (extend/append/add/__setstate__), so a pickle loads identically.
#include "unpickler_ops.hpp"

#include <cstdint>
#include <cstring>


#include "module_state.hpp"
#include "fresh_memory.hpp"

namespace picklex::py {

namespace {

/// Copy a large payload into freshly allocated memory, huge pages first.
void copy_into_fresh(char* dest, const char* src, std::size_t n) {
    advise_huge_pages(dest, n);
    std::memcpy(dest, src, n);
}

/// getattr(obj, name) with the dotted walk of protocol 4 ("Outer.Inner.method").
PyObject* get_attribute(PyObject* module, PyObject* name, bool dotted) {
    PyObject* found = nullptr;
    if (!dotted) {
        if (_PyObject_LookupAttr(module, name, &found) < 0) return nullptr;
    } else {
        Ref dot = Ref::steal(PyUnicode_FromStringAndSize(".", 1));
        if (!dot) return nullptr;
        Ref parts = Ref::steal(PyUnicode_Split(name, dot.get(), -1));
        if (!parts) return nullptr;
        const Py_ssize_t n = PyList_GET_SIZE(parts.get());
        for (Py_ssize_t i = 0; i < n; ++i) {
            if (PyUnicode_CompareWithASCIIString(PyList_GET_ITEM(parts.get(), i), "<locals>") == 0) {
                PyErr_Format(PyExc_AttributeError, "Can't pickle local attribute %R on %R", name,
                             module);
                return nullptr;
            }
        }
        Ref obj = Ref::borrow(module);
        for (Py_ssize_t i = 0; i < n && obj; ++i) {
            PyObject* next = nullptr;
            if (_PyObject_LookupAttr(obj.get(), PyList_GET_ITEM(parts.get(), i), &next) < 0)
                return nullptr;
            obj.reset(next);
        }
        found = obj.release();
    }
    if (!found && !PyErr_Occurred())
        PyErr_Format(PyExc_AttributeError, "Can't get attribute %R on %R", name, module);
    return found;
}

/// Map a Python 2 (module, name) to its Python 3 home, as _compat_pickle describes.
bool map_python2_name(const ModuleState& st, PyObject*& module_name, PyObject*& global_name,
                      Ref& keep_module, Ref& keep_name) {
    Ref key = Ref::steal(PyTuple_Pack(2, module_name, global_name));
    if (!key) return false;
    PyObject* item = PyDict_GetItemWithError(st.name_mapping_2to3, key.get());
    if (item) {
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
            PyErr_Format(PyExc_RuntimeError,
                         "_compat_pickle.NAME_MAPPING values should be 2-tuples, not %.200s",
                         Py_TYPE(item)->tp_name);
            return false;
        }
        PyObject* mod = PyTuple_GET_ITEM(item, 0);
        PyObject* name = PyTuple_GET_ITEM(item, 1);
        if (!PyUnicode_Check(mod) || !PyUnicode_Check(name)) {
            PyErr_Format(PyExc_RuntimeError,
                         "_compat_pickle.NAME_MAPPING values should be pairs of str, not "
                         "(%.200s, %.200s)",
                         Py_TYPE(mod)->tp_name, Py_TYPE(name)->tp_name);
            return false;
        }
        keep_module = Ref::borrow(mod);
        keep_name = Ref::borrow(name);
        module_name = mod;
        global_name = name;
        return true;
    }
    if (PyErr_Occurred()) return false;
    item = PyDict_GetItemWithError(st.import_mapping_2to3, module_name);
    if (item) {
        if (!PyUnicode_Check(item)) {
            PyErr_Format(PyExc_RuntimeError,
                         "_compat_pickle.IMPORT_MAPPING values should be strings, not %.200s",
                         Py_TYPE(item)->tp_name);
            return false;
        }
        keep_module = Ref::borrow(item);
        module_name = item;
        return true;
    }
    return !PyErr_Occurred();
}

/// The __import__ that PyImport_Import would call: the one in the caller's builtins.
PyObject* current_import_function(const ModuleState& st) {
    PyObject* globals = PyEval_GetGlobals(); // borrowed
    if (!globals) return nullptr;
    PyObject* builtins = PyDict_GetItemWithError(globals, st.names.__builtins__);
    if (!builtins) return nullptr;
    if (PyDict_Check(builtins)) return PyDict_GetItemWithError(builtins, st.names.__import__);
    if (PyModule_Check(builtins))
        return PyDict_GetItemWithError(PyModule_GetDict(builtins), st.names.__import__);
    return nullptr;
}

/// PyImport_Import(name), minus its cost when the module is already fully imported and
/// __import__ is the builtin one: then the import is exactly the sys.modules entry, after
/// the same "still initializing in another thread?" check the import system makes.
PyObject* import_module(const ModuleState& st, PyObject* name) {
    if (st.builtins_import && current_import_function(st) == st.builtins_import) {
        // sys.modules directly: PyImport_GetModule would make the same initializing check
        // but raise and clear an AttributeError for every module whose __spec__ is None.
        PyObject* modules = PyImport_GetModuleDict();
        PyObject* module = modules && PyDict_CheckExact(modules)
                               ? Py_XNewRef(PyDict_GetItemWithError(modules, name))
                               : nullptr;
        if (module && module != Py_None) {
            // __spec__._initializing, missing meaning "no" (scripts run as __main__ have
            // __spec__ = None).
            int busy = 0;
            PyObject* spec = nullptr;
            if (_PyObject_LookupAttr(module, st.names.__spec__, &spec) < 0) busy = -1;
            if (spec && spec != Py_None) {
                PyObject* initializing = nullptr;
                if (_PyObject_LookupAttr(spec, st.names._initializing, &initializing) < 0)
                    busy = -1;
                if (initializing) {
                    busy = PyObject_IsTrue(initializing);
                    Py_DECREF(initializing);
                }
            }
            Py_XDECREF(spec);
            if (busy == 0) return module;
        }
        Py_XDECREF(module);
    }
    PyErr_Clear();
    return PyImport_Import(name);
}

} // namespace

PyObject* find_class(const ModuleState& st, int protocol, bool fix_imports, PyObject* module_name,
                     PyObject* global_name) {
    if (PySys_Audit("pickle.find_class", "OO", module_name, global_name) < 0) return nullptr;
    Ref keep_module, keep_name;
    if (protocol < 3 && fix_imports &&
        !map_python2_name(st, module_name, global_name, keep_module, keep_name))
        return nullptr;
    // As PyImport_Import: honours a replaced __import__ and waits for a module that another
    // thread is still initializing (bpo-34572).
    Ref module = Ref::steal(import_module(st, module_name));
    if (!module) return nullptr;
    return get_attribute(module.get(), global_name, protocol >= 4);
}

PyObject* PyOps::make_int_text(const char* text, Op op) {
    PyObject* value = PyLong_FromString(text, nullptr, 0);
    if (!value && op == Op::INT) {
        // INT reports its own message rather than int()'s.
        PyErr_Clear();
        return own_error(PyExc_ValueError, "could not convert string to int");
    }
    return value;
}

PyObject* PyOps::make_float_text(const char* text) {
    char* stop = nullptr;
    const double value = PyOS_string_to_double(text, &stop, PyExc_OverflowError);
    if (value == -1.0 && PyErr_Occurred()) return nullptr;
    if (*stop != '\n' && *stop != '\0') {
        PyErr_SetString(PyExc_ValueError, "could not convert string to float");
        return nullptr;
    }
    return PyFloat_FromDouble(value);
}

PyObject* PyOps::make_large_bytes(const char* p, std::size_t n) {
    // A stream may have read the payload straight into a bytes object: take it as is.
    if (settings_.adopt_payload)
        if (PyObject* whole = settings_.adopt_payload(settings_.payload_source, p, n)) return whole;
    PyObject* bytes = PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(n));
    if (bytes) copy_into_fresh(PyBytes_AS_STRING(bytes), p, n);
    return bytes;
}

PyObject* PyOps::make_large_bytearray(const char* p, std::size_t n) {
    PyObject* array = PyByteArray_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(n));
    if (array) copy_into_fresh(PyByteArray_AS_STRING(array), p, n);
    return array;
}

PyObject* PyOps::make_py2_str(const char* p, std::size_t n) {
    if (settings_.encoding_is_bytes) return make_bytes(p, n);
    return PyUnicode_Decode(p, static_cast<Py_ssize_t>(n), settings_.encoding.c_str(),
                            settings_.errors.c_str());
}

PyObject* PyOps::make_py2_str_escaped(const char* p, std::size_t n) {
    // Python 2 wrote STRING with repr(); undo the escapes, then decode like BINSTRING.
    Ref bytes = Ref::steal(
        PyBytes_DecodeEscape(p, static_cast<Py_ssize_t>(n), nullptr, 0, nullptr));
    if (!bytes || settings_.encoding_is_bytes) return bytes.release();
    return PyUnicode_FromEncodedObject(bytes.get(), settings_.encoding.c_str(),
                                       settings_.errors.c_str());
}

PyObject* PyOps::next_buffer() {
    if (!settings_.buffers)
        return own_error(st().UnpicklingError,
                         "pickle stream refers to out-of-band data but no *buffers* argument "
                         "was given");
    GcPause::Resume user_code(gc_);
    PyObject* buffer = PyIter_Next(settings_.buffers);
    if (!buffer && !PyErr_Occurred())
        return own_error(st().UnpicklingError, "not enough out-of-band buffers");
    return buffer;
}

bool PyOps::make_readonly(PyObject*& top) {
    PyObject* view = PyMemoryView_FromObject(top);
    if (!view) return false;
    Py_buffer* buffer = PyMemoryView_GET_BUFFER(view);
    if (buffer->readonly) {
        // Already read-only: keep the original object.
        Py_DECREF(view);
        return true;
    }
    buffer->readonly = 1;
    PyObject* old = top;
    top = view;
    Py_DECREF(old);
    return true;
}

PyObject* PyOps::make_frozenset(PyObject** items, std::size_t n) {
    Ref tuple = Ref::steal(make_tuple(items, n));
    if (!tuple) return nullptr;
    return PyFrozenSet_New(tuple.get());
}

bool PyOps::list_extend_generic(PyObject* list, PyObject** items, std::size_t n) {
    // Not an exact list: extend() if it has one, else append() item by item (PEP 307).
    PyObject* extend_method = nullptr;
    if (_PyObject_LookupAttr(list, st().names.extend, &extend_method) < 0) {
        release_all(items, n);
        return false;
    }
    Ref extend = Ref::steal(extend_method);
    if (extend) {
        Ref slice = Ref::steal(make_list(items, n));
        if (!slice) return false;
        Ref result = Ref::steal(PyObject_CallOneArg(extend.get(), slice.get()));
        return static_cast<bool>(result);
    }
    Ref append = Ref::steal(PyObject_GetAttr(list, st().names.append));
    if (!append) {
        release_all(items, n);
        return false;
    }
    for (std::size_t i = 0; i < n; ++i) {
        Ref item = Ref::steal(items[i]);
        Ref result = Ref::steal(PyObject_CallOneArg(append.get(), item.get()));
        if (!result) {
            release_all(items + i + 1, n - i - 1);
            return false;
        }
    }
    return true;
}

bool PyOps::set_additems(PyObject* set, PyObject** items, std::size_t n) {
    if (PySet_Check(set)) {
        // Any set, subclasses included, is updated directly, as CPython does.
        for (std::size_t i = 0; i < n; ++i) {
            if (PySet_Add(set, items[i]) < 0) {
                release_all(items + i, n - i);
                return false;
            }
            Py_DECREF(items[i]);
        }
        return true;
    }
    GcPause::Resume user_code(gc_);
    Ref add = Ref::steal(PyObject_GetAttr(set, st().names.add));
    if (!add) {
        release_all(items, n);
        return false;
    }
    for (std::size_t i = 0; i < n; ++i) {
        Ref item = Ref::steal(items[i]);
        Ref result = Ref::steal(PyObject_CallOneArg(add.get(), item.get()));
        if (!result) {
            release_all(items + i + 1, n - i - 1);
            return false;
        }
    }
    return true;
}

PyObject* PyOps::call_find_class(PyObject* module, PyObject* name) {
    // Imports run module code.
    GcPause::Resume user_code(gc_);
    if (settings_.call_find_class)
        return PyObject_CallMethodObjArgs(settings_.unpickler, st().names.find_class, module,
                                          name, nullptr);
    return find_class(st(), protocol_, settings_.fix_imports, module, name);
}

PyObject* PyOps::find_global(std::string_view module, std::string_view name, Op op) {
    // GLOBAL lines are UTF-8; INST only ever came from Python 2, so ASCII.
    auto decode = op == Op::INST ? PyUnicode_DecodeASCII : PyUnicode_DecodeUTF8;
    Ref module_name =
        Ref::steal(decode(module.data(), static_cast<Py_ssize_t>(module.size()), "strict"));
    if (!module_name) return nullptr;
    Ref global_name =
        Ref::steal(decode(name.data(), static_cast<Py_ssize_t>(name.size()), "strict"));
    if (!global_name) return nullptr;
    return call_find_class(module_name.get(), global_name.get());
}

bool PyOps::check_number_text(std::string_view text) {
    // int() builds its error message from the text decoded as UTF-8, first 200 bytes.
    const auto size = static_cast<Py_ssize_t>(text.size() < 200 ? text.size() : 200);
    Ref str = Ref::steal(PyUnicode_DecodeUTF8(text.data(), size, "strict"));
    return static_cast<bool>(str);
}

bool PyOps::check_module_name(std::string_view module, Op op) {
    auto decode = op == Op::INST ? PyUnicode_DecodeASCII : PyUnicode_DecodeUTF8;
    Ref name = Ref::steal(decode(module.data(), static_cast<Py_ssize_t>(module.size()), "strict"));
    return static_cast<bool>(name);
}

PyObject* PyOps::stack_global(PyObject* module, PyObject* name) {
    if (!PyUnicode_CheckExact(module) || !PyUnicode_CheckExact(name))
        return own_error(st().UnpicklingError, "STACK_GLOBAL requires str");
    return call_find_class(module, name);
}

PyObject* PyOps::extension(std::int32_t code) {
    ModuleState& st = this->st();
    Ref key = Ref::steal(PyLong_FromLong(code));
    if (!key) return nullptr;
    if (PyObject* cached = PyDict_GetItemWithError(st.extension_cache, key.get()))
        return Py_NewRef(cached);
    if (PyErr_Occurred()) return nullptr;
    Ref pair = Ref::borrow(PyDict_GetItemWithError(st.inverted_registry, key.get()));
    if (!pair) {
        if (PyErr_Occurred()) return nullptr;
        return own_error(PyExc_ValueError, "unregistered extension code " + std::to_string(code));
    }
    if (!PyTuple_Check(pair.get()) || PyTuple_GET_SIZE(pair.get()) != 2 ||
        !PyUnicode_Check(PyTuple_GET_ITEM(pair.get(), 0)) ||
        !PyUnicode_Check(PyTuple_GET_ITEM(pair.get(), 1)))
        return own_error(PyExc_ValueError, "_inverted_registry[" + std::to_string(code) +
                                               "] isn't a 2-tuple of strings");
    Ref obj = Ref::steal(
        call_find_class(PyTuple_GET_ITEM(pair.get(), 0), PyTuple_GET_ITEM(pair.get(), 1)));
    if (!obj || PyDict_SetItem(st.extension_cache, key.get(), obj.get()) < 0) return nullptr;
    return obj.release();
}

PyObject* PyOps::newobj_ex(PyObject* cls, PyObject* args, PyObject* kwargs) {
    // cls.__new__(cls, *args, **kwargs) through tp_new, exactly as _pickle does.
    const char* op = kwargs ? "NEWOBJ_EX" : "NEWOBJ";
    auto complain = [&](const char* what, PyObject* culprit) {
        return own_error(st().UnpicklingError,
                         std::string(op) + what + Py_TYPE(culprit)->tp_name);
    };
    if (!PyType_Check(cls)) return complain(" class argument must be a type, not ", cls);
    auto* type = reinterpret_cast<PyTypeObject*>(cls);
    if (!type->tp_new)
        return own_error(st().UnpicklingError, std::string(op) + " class argument '" +
                                                      type->tp_name + "' doesn't have __new__");
    if (!PyTuple_Check(args)) return complain(" args argument must be a tuple, not ", args);
    if (kwargs && !PyDict_Check(kwargs))
        return complain(" kwargs argument must be a dict, not ", kwargs);
    if (type->tp_new == PyBaseObject_Type.tp_new) return type->tp_new(type, args, kwargs);
    GcPause::Resume user_code(gc_); // a __new__ written in Python
    return type->tp_new(type, args, kwargs);
}

PyObject* PyOps::instantiate(PyObject* cls, PyObject* args) {
    // OBJ/INST of a class without arguments and without __getinitargs__ skips __init__, as
    // Python 2's classic instances did.
    GcPause::Resume user_code(gc_);
    if (PyTuple_GET_SIZE(args) == 0 && PyType_Check(cls)) {
        PyObject* func = nullptr;
        if (_PyObject_LookupAttr(cls, st().names.__getinitargs__, &func) < 0) return nullptr;
        if (!func) return PyObject_CallMethodOneArg(cls, st().names.__new__, cls);
        Py_DECREF(func);
    }
    return PyObject_CallObject(cls, args);
}

bool PyOps::check_persistent_load() {
    if (settings_.pers_func && *settings_.pers_func) return true;
    own_error(st().UnpicklingError, kNoPersistentLoad);
    return false;
}

PyObject* PyOps::persistent_load(PyObject* pid) {
    if (!check_persistent_load()) return nullptr;
    // Hold the hook while it runs: it may replace itself.
    Ref func = Ref::borrow(*settings_.pers_func);
    PyObject* self = settings_.pers_func_self ? *settings_.pers_func_self : nullptr;
    GcPause::Resume user_code(gc_);
    if (self) return PyObject_CallFunctionObjArgs(func.get(), self, pid, nullptr);
    return PyObject_CallOneArg(func.get(), pid);
}

PyObject* PyOps::persistent_load_text(std::string_view pid) {
    if (!check_persistent_load()) return nullptr;
    Ref text = Ref::steal(
        PyUnicode_DecodeASCII(pid.data(), static_cast<Py_ssize_t>(pid.size()), "strict"));
    if (!text) {
        if (PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
            // The stdlib's exact text, without the opcode context: code compares it.
            PyErr_SetString(st().UnpicklingError,
                            "persistent IDs in protocol 0 must be ASCII strings");
            return nullptr;
        }
        return nullptr;
    }
    return persistent_load(text.get());
}

} // namespace picklex::py
