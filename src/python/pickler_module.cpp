// src/python/pickler_module.cpp: dumps(), dump() and the Pickler type's registration.
#include "module_api.hpp"
#include "module_state.hpp"
#include "pickler.hpp"
#include "pickler_type.hpp"

namespace picklex::py {

namespace {

PyObject* module_dumps(PyObject*, PyObject* args, PyObject* kwargs) {
    static const char* keywords[] = {"obj", "protocol", "fix_imports", "buffer_callback", nullptr};
    PyObject* obj;
    PyObject* protocol = Py_None;
    int fix_imports = 1;
    PyObject* buffer_callback = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|O$pO:dumps", const_cast<char**>(keywords),
                                     &obj, &protocol, &fix_imports, &buffer_callback))
        return nullptr;
    PicklerCore core;
    if (!core.set_protocol(protocol, fix_imports != 0) || !core.set_buffer_callback(buffer_callback))
        return nullptr;
    if (!core.dump(obj, nullptr)) return nullptr;
    return core.take_result();
}

PyObject* module_dump(PyObject*, PyObject* args, PyObject* kwargs) {
    static const char* keywords[] = {"obj",         "file", "protocol", "fix_imports",
                                     "buffer_callback", nullptr};
    PyObject* obj;
    PyObject* file;
    PyObject* protocol = Py_None;
    int fix_imports = 1;
    PyObject* buffer_callback = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|O$pO:dump", const_cast<char**>(keywords),
                                     &obj, &file, &protocol, &fix_imports, &buffer_callback))
        return nullptr;
    PicklerCore core;
    if (!core.set_protocol(protocol, fix_imports != 0) || !core.set_output_file(file) ||
        !core.set_buffer_callback(buffer_callback))
        return nullptr;
    if (!core.dump(obj, nullptr)) return nullptr;
    Py_RETURN_NONE;
}

PyMethodDef pickler_functions[] = {
    {"dumps", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(module_dumps)),
     METH_VARARGS | METH_KEYWORDS,
     "dumps($module, /, obj, protocol=None, *, fix_imports=True, buffer_callback=None)\n--\n\n"
     "Return the pickled representation of the object as a bytes object.\n\n"
     "The same bytes as the standard pickle.dumps() for the same arguments."},
    {"dump", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(module_dump)),
     METH_VARARGS | METH_KEYWORDS,
     "dump($module, /, obj, file, protocol=None, *, fix_imports=True, buffer_callback=None)\n--\n\n"
     "Write a pickled representation of obj to the open file object file.\n\n"
     "Large pickles are streamed frame by frame (protocol 4 and up) rather than built whole "
     "in memory first."},
    {nullptr, nullptr, 0, nullptr},
};

} // namespace

bool add_pickler_api(PyObject* module) {
    if (!ready_pickler_types()) return false;
    PyObject* type = reinterpret_cast<PyObject*>(pickler_type());
    if (PyModule_AddObjectRef(module, "Pickler", type) < 0) return false;
    return PyModule_AddFunctions(module, pickler_functions) == 0;
}

} // namespace picklex::py
