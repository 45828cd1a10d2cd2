// src/python/unpickler_module.cpp: the decoding side of the module: Unpickler, load(), loads().
//
// load() and loads() do not create an Unpickler object per call. They borrow the calling
// thread's spare decoder machine (stack and memo storage already allocated), run the pickle
// through it and hand it back emptied. A nested call, from a __setstate__ or find_class that
// itself unpickles, finds no spare and uses a fresh machine.
#include <cstring>
#include <memory>
#include <new>

#include "module_api.hpp"
#include "module_state.hpp"
#include "unpickler_docs.hpp"
#include "unpickler_load.hpp"
#include "unpickler_ops.hpp"
#include "unpickler_source.hpp"
#include "unpickler_type.hpp"

namespace picklex::py {

namespace {

/// A decoder machine lent to one load()/loads() call.
class BorrowedMachine {
  public:
    /// Slots a spare machine keeps between calls; a giant pickle's arrays are given back.
    static constexpr std::size_t kKeepSlots = std::size_t{1} << 16;

    BorrowedMachine() noexcept : machine_(spare_ ? spare_.release() : new (std::nothrow) PyMachine()) {}
    ~BorrowedMachine() {
        if (!machine_) return;
        // Emptying the memo can run __del__ methods; keep the caller's exception intact.
        PyObject *type, *value, *traceback;
        PyErr_Fetch(&type, &value, &traceback);
        machine_->reset();
        machine_->clear_memo(kKeepSlots);
        machine_->trim(kKeepSlots);
        PyErr_Restore(type, value, traceback);
        if (!spare_) spare_.reset(machine_);
        else delete machine_;
    }
    BorrowedMachine(const BorrowedMachine&) = delete;
    BorrowedMachine& operator=(const BorrowedMachine&) = delete;

    PyMachine* get() const noexcept { return machine_; }

  private:
    // Holds no Python references between calls, so thread exit can free it without the GIL.
    static thread_local std::unique_ptr<PyMachine> spare_;
    PyMachine* machine_;
};

thread_local std::unique_ptr<PyMachine> BorrowedMachine::spare_;

/// The keyword-only options shared by load() and loads(), as their argument clinic reads them.
bool parse_options(const char* function, PyObject* const* values, PyObject* kwnames,
                   LoadSettings& settings, PyObject*& buffers, PyObject** file) {
    static const char* const kNames[] = {"fix_imports", "encoding", "errors", "buffers", "file"};
    PyObject* found[5] = {};
    const Py_ssize_t count = PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t k = 0; k < count; ++k) {
        PyObject* key = PyTuple_GET_ITEM(kwnames, k);
        int slot = -1;
        for (int i = 0; i < (file ? 5 : 4) && slot < 0; ++i)
            if (PyUnicode_CompareWithASCIIString(key, kNames[i]) == 0) slot = i;
        if (slot < 0) {
            PyErr_Format(PyExc_TypeError, "%R is an invalid keyword argument for %s()", key,
                         function);
            return false;
        }
        if (slot == 4 && *file) {
            PyErr_Format(PyExc_TypeError, "argument for %s() given by name ('file') and position (1)",
                         function);
            return false;
        }
        found[slot] = values[k];
    }
    if (file && found[4]) *file = found[4];
    if (found[0]) {
        const int truth = PyObject_IsTrue(found[0]);
        if (truth < 0) return false;
        settings.fix_imports = truth != 0;
    }
    for (int i = 1; i <= 2; ++i) {
        if (!found[i]) continue;
        if (!PyUnicode_Check(found[i])) {
            PyErr_Format(PyExc_TypeError, "%s() argument '%s' must be str, not %.200s", function,
                         kNames[i], Py_TYPE(found[i])->tp_name);
            return false;
        }
        Py_ssize_t size = 0;
        const char* text = PyUnicode_AsUTF8AndSize(found[i], &size);
        if (!text) return false;
        if (std::strlen(text) != static_cast<std::size_t>(size)) {
            PyErr_SetString(PyExc_ValueError, "embedded null character");
            return false;
        }
        (i == 1 ? settings.encoding : settings.errors).assign(text, static_cast<std::size_t>(size));
    }
    settings.encoding_is_bytes = settings.encoding == "bytes";
    buffers = found[3];
    return true;
}

/// The out-of-band buffers argument as an iterator (null for None or absent).
bool buffers_iterator(PyObject* buffers, Ref& iterator) {
    if (!buffers || buffers == Py_None) return true;
    iterator = Ref::steal(PyObject_GetIter(buffers));
    return static_cast<bool>(iterator);
}

PyObject* loads_impl(ModuleState& st, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    if (nargs != 1) {
        PyErr_Format(PyExc_TypeError, "loads() takes exactly 1 positional argument (%zd given)",
                     nargs);
        return nullptr;
    }
    LoadSettings settings;
    settings.state = &st;
    PyObject* buffers = nullptr;
    if (kwnames && !parse_options("loads", args + nargs, kwnames, settings, buffers, nullptr))
        return nullptr;
    // The pickle is parsed in place, through the buffer protocol.
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_CONTIG_RO) < 0) return nullptr;
    PyObject* result = nullptr;
    Ref iterator;
    if (buffers_iterator(buffers, iterator)) {
        settings.buffers = iterator.get();
        BorrowedMachine machine;
        if (!machine.get()) {
            PyErr_NoMemory();
        } else {
            MemorySource source(view.buf, static_cast<std::size_t>(view.len));
            result = run_load(*machine.get(), source, std::move(settings));
        }
    }
    PyBuffer_Release(&view);
    return result;
}

PyObject* load_impl(ModuleState& st, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    if (nargs > 1) {
        PyErr_Format(PyExc_TypeError, "load() takes exactly 1 positional argument (%zd given)",
                     nargs);
        return nullptr;
    }
    PyObject* file = nargs ? args[0] : nullptr;
    LoadSettings settings;
    settings.state = &st;
    PyObject* buffers = nullptr;
    if (kwnames && !parse_options("load", args + nargs, kwnames, settings, buffers, &file))
        return nullptr;
    if (!file) {
        PyErr_SetString(PyExc_TypeError, "load() missing required argument 'file' (pos 1)");
        return nullptr;
    }
    FileMethods methods;
    if (!methods.lookup(st, file)) return nullptr;
    Ref iterator;
    if (!buffers_iterator(buffers, iterator)) return nullptr;
    settings.buffers = iterator.get();
    BorrowedMachine machine;
    if (!machine.get()) return PyErr_NoMemory();
    FileSource source(st, methods.read.get(), methods.readline.get(), methods.readinto.get(),
                      methods.peek.get(), nullptr);
    settings.adopt_payload = FileSource::adopt_payload;
    settings.payload_source = &source;
    return run_load(*machine.get(), source, std::move(settings));
}

// C++ exceptions (only std::bad_alloc can occur) never reach Python.
PyObject* loads(PyObject* module, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    try {
        return loads_impl(state_of_module(module), args, nargs, kwnames);
    } catch (const std::bad_alloc&) {
        return PyErr_NoMemory();
    }
}

PyObject* load(PyObject* module, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    try {
        return load_impl(state_of_module(module), args, nargs, kwnames);
    } catch (const std::bad_alloc&) {
        return PyErr_NoMemory();
    }
}

PyMethodDef unpickler_functions[] = {
    {"load", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(load)),
     METH_FASTCALL | METH_KEYWORDS,
     "load($module, /, file, *, fix_imports=True, encoding='ASCII',\n     errors='strict', "
     "buffers=())\n--\n\n"
     "Read and return an object from the pickle data stored in a file.\n\n"
     "This is equivalent to ``Unpickler(file).load()``, but may be more\nefficient.\n\n"
     PICKLEX_DOC_PROTOCOL_DETECTED
     PICKLEX_DOC_FILE_METHODS
     PICKLEX_DOC_PY2_OPTIONS},
    {"loads", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(loads)),
     METH_FASTCALL | METH_KEYWORDS,
     "loads($module, data, /, *, fix_imports=True, encoding='ASCII',\n      errors='strict', "
     "buffers=())\n--\n\n"
     "Read and return an object from the given pickle data.\n\n"
     PICKLEX_DOC_PROTOCOL_DETECTED
     PICKLEX_DOC_PY2_OPTIONS},
    {nullptr, nullptr, 0, nullptr},
};

} // namespace

bool add_unpickler_api(PyObject* module, ModuleState& st) {
    if (!add_unpickler_types(module, st)) return false;
    return PyModule_AddFunctions(module, unpickler_functions) == 0;
}

} // namespace picklex::py
