// src/python/module.cpp: the _picklex extension module: state, error mapping, init.
#include "python.hpp"

#include "module_api.hpp"
#include "module_state.hpp"
#include "picklex/opcodes.hpp"
#include "refs.hpp"

namespace picklex::py {

namespace {

ModuleState g_state;

PyObject* import_attr(const char* module, const char* name) {
    Ref mod = Ref::steal(PyImport_ImportModule(module));
    if (!mod) return nullptr;
    return PyObject_GetAttrString(mod.get(), name);
}

/// Fetch a stdlib dict that the pickle machinery depends on; refuse anything else.
PyObject* import_dict(const char* module, const char* name) {
    PyObject* value = import_attr(module, name);
    if (value && !PyDict_CheckExact(value)) {
        PyErr_Format(PyExc_RuntimeError, "%s.%s should be a dict, not %.200s", module, name,
                     Py_TYPE(value)->tp_name);
        Py_CLEAR(value);
    }
    return value;
}

/// The opcode table as a tuple of (name, code byte, argument kind, protocol) for the
/// Python side (pickle's module constants, the disassembler).
PyObject* build_opcode_table() {
    static const char* const kArgNames[] = {
        "none", "uint1", "uint2", "int4", "uint4", "uint8", "decimalnl_short",
        "decimalnl_long", "stringnl", "stringnl_noescape", "stringnl_noescape_pair",
        "string1", "string4", "bytes1", "bytes4", "bytes8", "bytearray8", "unicodestringnl",
        "unicodestring1", "unicodestring4", "unicodestring8", "floatnl", "float8", "long1",
        "long4"};
    Ref table = Ref::steal(PyTuple_New(static_cast<Py_ssize_t>(kOpcodeCount)));
    if (!table) return nullptr;
    for (std::size_t i = 0; i < kOpcodeCount; ++i) {
        const OpInfo& info = kOpcodes[i];
        const char code = static_cast<char>(info.op);
        PyObject* row = Py_BuildValue("(s#y#sis#s#)", info.name.data(),
                                      static_cast<Py_ssize_t>(info.name.size()), &code,
                                      static_cast<Py_ssize_t>(1),
                                      kArgNames[static_cast<int>(info.arg)], info.protocol,
                                      info.stack_before.data(),
                                      static_cast<Py_ssize_t>(info.stack_before.size()),
                                      info.stack_after.data(),
                                      static_cast<Py_ssize_t>(info.stack_after.size()));
        if (!row) return nullptr;
        PyTuple_SET_ITEM(table.get(), static_cast<Py_ssize_t>(i), row);
    }
    return table.release();
}

PyModuleDef g_module_def = {
    PyModuleDef_HEAD_INIT,
    "picklex._picklex",
    "The picklex C++ pickle engine (use the picklex package, not this module).",
    -1,
    nullptr,
};

} // namespace

ModuleState& state() noexcept { return g_state; }

bool init_state() {
    ModuleState& st = g_state;
#define PICKLEX_X(name)                                                                            \
    if (!(st.names.name = PyUnicode_InternFromString(#name))) return false;
    PICKLEX_INTERNED_NAMES(PICKLEX_X)
#undef PICKLEX_X

    if (!(st.PickleError = import_attr("pickle", "PickleError"))) return false;
    if (!(st.PicklingError = import_attr("pickle", "PicklingError"))) return false;
    if (!(st.UnpicklingError = import_attr("pickle", "UnpicklingError"))) return false;
    if (!(st.dispatch_table = import_dict("copyreg", "dispatch_table"))) return false;
    if (!(st.extension_registry = import_dict("copyreg", "_extension_registry"))) return false;
    if (!(st.inverted_registry = import_dict("copyreg", "_inverted_registry"))) return false;
    if (!(st.extension_cache = import_dict("copyreg", "_extension_cache"))) return false;
    if (!(st.copyreg_reconstructor = import_attr("copyreg", "_reconstructor"))) return false;
    if (!(st.copyreg_newobj = import_attr("copyreg", "__newobj__"))) return false;
    if (!(st.name_mapping_2to3 = import_dict("_compat_pickle", "NAME_MAPPING"))) return false;
    if (!(st.import_mapping_2to3 = import_dict("_compat_pickle", "IMPORT_MAPPING"))) return false;
    if (!(st.name_mapping_3to2 = import_dict("_compat_pickle", "REVERSE_NAME_MAPPING")))
        return false;
    if (!(st.import_mapping_3to2 = import_dict("_compat_pickle", "REVERSE_IMPORT_MAPPING")))
        return false;
    if (!(st.codecs_encode = import_attr("codecs", "encode"))) return false;
    if (!(st.builtins_getattr = import_attr("builtins", "getattr"))) return false;
    if (!(st.builtins_import = import_attr("builtins", "__import__"))) return false;
    if (!(st.functools_partial = import_attr("functools", "partial"))) return false;
    if (!(st.empty_tuple = PyTuple_New(0))) return false;
    Ref default_protocol = Ref::steal(import_attr("pickle", "DEFAULT_PROTOCOL"));
    if (!default_protocol) return false;
    st.default_protocol = static_cast<int>(PyLong_AsLong(default_protocol.get()));
    if (st.default_protocol == -1 && PyErr_Occurred()) return false;
    return true;
}

void raise_core_error(const Error& error, bool unpickling) {
    if (error.code == Errc::external) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_SystemError, "picklex: external error without an exception");
        return;
    }
    if (PyErr_Occurred()) return;
    const std::string message = error.message();
    PyObject* type = unpickling ? g_state.UnpicklingError : g_state.PicklingError;
    switch (error.code) {
    case Errc::empty_input: type = PyExc_EOFError; break;
    case Errc::out_of_memory: type = PyExc_MemoryError; break;
    case Errc::unsupported_protocol: type = PyExc_ValueError; break;
    case Errc::unencodable:
        // The stdlib raises OverflowError for sizes a protocol cannot express.
        type = message.find("large") != std::string::npos ? PyExc_OverflowError : type;
        break;
    default: break;
    }
    PyErr_SetString(type, message.c_str());
}

} // namespace picklex::py

PyMODINIT_FUNC PyInit__picklex(void) {
    using namespace picklex::py;
    if (!init_state()) return nullptr;
    Ref module = Ref::steal(PyModule_Create(&g_module_def));
    if (!module) return nullptr;
    if (PyModule_AddIntConstant(module.get(), "HIGHEST_PROTOCOL", picklex::kHighestProtocol) < 0)
        return nullptr;
    PyObject* table = build_opcode_table();
    if (!table || PyModule_AddObject(module.get(), "OPCODES", table) < 0) {
        Py_XDECREF(table);
        return nullptr;
    }
    if (!add_pickler_api(module.get())) return nullptr;
    if (!add_unpickler_api(module.get())) return nullptr;
    return module.release();
}
