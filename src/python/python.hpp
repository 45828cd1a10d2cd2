// src/python/python.hpp: Python.h plus the few C-API calls newer than Python 3.9.
//
// Every file of the front includes this instead of <Python.h>, so the extension builds on
// every supported interpreter (3.9 and up; 3.11 is the one tested here).
#pragma once

#include <Python.h>

// 3.13 made persistent_id and persistent_load methods of the Pickler and Unpickler types,
// looked up on every dump()/load(); before, they were attributes read once by __init__.
#define PICKLEX_HOOKS_ARE_METHODS (PY_VERSION_HEX >= 0x030D0000)

#ifdef Py_GIL_DISABLED
#error "picklex does not support free-threaded CPython builds yet: its per-interpreter caches \
rely on the GIL (see docs/FREE_THREADING.md for what a free-threaded build needs)"
#endif

// Heap type flags that older interpreters lack: immutable types (3.10) and types that
// cannot be instantiated from Python (3.10; before, tp_new is cleared after creation).
#ifdef Py_TPFLAGS_IMMUTABLETYPE
#define PICKLEX_TPFLAGS_IMMUTABLE Py_TPFLAGS_IMMUTABLETYPE
#else
#define PICKLEX_TPFLAGS_IMMUTABLE 0
#endif
#ifdef Py_TPFLAGS_DISALLOW_INSTANTIATION
#define PICKLEX_TPFLAGS_NO_INSTANCES Py_TPFLAGS_DISALLOW_INSTANTIATION
#else
#define PICKLEX_TPFLAGS_NO_INSTANCES 0
#endif

#if PY_VERSION_HEX < 0x030A0000
inline PyObject* Py_NewRef(PyObject* obj) {
    Py_INCREF(obj);
    return obj;
}
inline PyObject* Py_XNewRef(PyObject* obj) {
    Py_XINCREF(obj);
    return obj;
}
inline int PyModule_AddObjectRef(PyObject* module, const char* name, PyObject* value) {
    Py_XINCREF(value);
    const int status = PyModule_AddObject(module, name, value);
    if (status < 0) Py_XDECREF(value);
    return status;
}

// The collector switches through the gc module before 3.10 added them to the C API. The
// real functions never fail and leave the error indicator alone, so the shims keep an
// exception that is already set (a load that is ending with an error) and swallow their own.
namespace picklex::py::compat {
inline int call_gc(const char* function) {
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    int truth = 0;
    if (PyObject* gc = PyImport_ImportModule("gc")) {
        if (PyObject* result = PyObject_CallMethod(gc, function, nullptr)) {
            truth = result == Py_None ? 0 : PyObject_IsTrue(result);
            Py_DECREF(result);
        }
        Py_DECREF(gc);
    }
    if (truth < 0) truth = 0;
    PyErr_Clear();
    PyErr_Restore(type, value, traceback);
    return truth;
}
} // namespace picklex::py::compat

inline int PyGC_IsEnabled() { return picklex::py::compat::call_gc("isenabled"); }
inline int PyGC_Enable() {
    const int was = PyGC_IsEnabled();
    picklex::py::compat::call_gc("enable");
    return was;
}
inline int PyGC_Disable() {
    const int was = PyGC_IsEnabled();
    picklex::py::compat::call_gc("disable");
    return was;
}
#endif

#if PY_VERSION_HEX >= 0x030D0000
// 3.13 made the lookup that reports "missing" without an exception public under a new name.
inline int _PyObject_LookupAttr(PyObject* obj, PyObject* name, PyObject** result) {
    return PyObject_GetOptionalAttr(obj, name, result);
}
#endif

#if PY_VERSION_HEX >= 0x030D0000
// 3.13 moved the set walk the C pickler uses into the internal headers; the function is still
// exported, so declare it rather than reimplement the table walk.
extern "C" PyAPI_FUNC(int) _PySet_NextEntry(PyObject* set, Py_ssize_t* pos, PyObject** key,
                                            Py_hash_t* hash);
#endif
