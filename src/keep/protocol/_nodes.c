/* The compiled fast path of `keep.protocol.tree`: a tree's decoded msgpack
 * nodes checked and built into `Node` tuples in one pass (docs/format.md §9).
 *
 * It accepts exactly what `Node.from_list` accepts and builds the same
 * tuples, sharing the owner fields through the same table; anything it does
 * not accept (a bad field, unsorted names, xattrs that do not decode) makes
 * it return None, and the pure-Python decoder then runs and raises the error
 * that names the field. So this file decides nothing the reference does not:
 * tests/protocol/test_tree_nodes.py holds the two to the same answers.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* The format's limits (keep.protocol.limits, keep.protocol.tree); tree.py
 * uses this module only if LIMITS equals its own. */
#define NODE_FIELDS 18
#define NAME_MAX_BYTES 4096
#define USER_NAME_MAX 256
#define BLOB_ID_SIZE 32
#define CONTENT_MAX ((64 * 1024 * 1024) / BLOB_ID_SIZE)
#define MODE_MAX 07777
#define KIND_FILE 1
#define KIND_DIR 2

/* `value` is an exact int in [lo, hi] (signed 64-bit bounds). */
static int
int_in(PyObject *value, long long lo, long long hi)
{
    int overflow;
    long long v;
    if (!PyLong_CheckExact(value))
        return 0;
    v = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (overflow || (v == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return 0;
    }
    return lo <= v && v <= hi;
}

/* `value` is an exact int in [0, 2**64 - 1]. */
static int
u64(PyObject *value)
{
    if (!PyLong_CheckExact(value))
        return 0;
    /* a negative value raises OverflowError here, as a too large one does */
    if (PyLong_AsUnsignedLongLong(value) == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return 1;
}

static int
blob_id(PyObject *value)
{
    return PyBytes_CheckExact(value) && PyBytes_GET_SIZE(value) == BLOB_ID_SIZE;
}

static int
name_ok(PyObject *name)
{
    const char *s;
    Py_ssize_t n;
    if (!PyBytes_CheckExact(name))
        return 0;
    s = PyBytes_AS_STRING(name);
    n = PyBytes_GET_SIZE(name);
    if (n <= 0 || n > NAME_MAX_BYTES)
        return 0;
    if (s[0] == '.' && (n == 1 || (n == 2 && s[1] == '.')))
        return 0;
    return memchr(s, '/', (size_t)n) == NULL && memchr(s, '\0', (size_t)n) == NULL;
}

static int
user_ok(PyObject *value)
{
    return PyUnicode_CheckExact(value) && PyUnicode_GET_LENGTH(value) <= USER_NAME_MAX;
}

/* -1 if a < b, 0 if equal, 1 if a > b, as bytes compare. */
static int
compare_names(PyObject *a, PyObject *b)
{
    Py_ssize_t la = PyBytes_GET_SIZE(a), lb = PyBytes_GET_SIZE(b);
    int c = memcmp(PyBytes_AS_STRING(a), PyBytes_AS_STRING(b), (size_t)(la < lb ? la : lb));
    if (c != 0)
        return c < 0 ? -1 : 1;
    return la < lb ? -1 : (la > lb ? 1 : 0);
}

/* Every field of one raw node as `Node.from_list`'s combined test judges it;
 * on success *kind is the node's type number. */
static int
fields_ok(PyObject **f, long *kind)
{
    PyObject *content = f[16], *subtree = f[17];
    Py_ssize_t i, n;
    long k;
    if (!name_ok(f[0]) || !int_in(f[1], 1, 6))
        return 0;
    k = PyLong_AsLong(f[1]);
    if (!(int_in(f[2], 0, MODE_MAX) && int_in(f[3], 0, UINT32_MAX) && int_in(f[4], 0, UINT32_MAX)
          && user_ok(f[5]) && user_ok(f[6]) && int_in(f[7], INT64_MIN, INT64_MAX)
          && int_in(f[8], INT64_MIN, INT64_MAX) && int_in(f[9], 0, INT64_MAX) && u64(f[10])
          && u64(f[11]) && u64(f[12]) && u64(f[13]) && PyList_CheckExact(f[14])
          && PyBytes_CheckExact(f[15]) && PyBytes_GET_SIZE(f[15]) <= NAME_MAX_BYTES
          && PyList_CheckExact(content)))
        return 0;
    n = PyList_GET_SIZE(content);
    if (n > CONTENT_MAX || (n > 0 && k != KIND_FILE))
        return 0;
    for (i = 0; i < n; i++)
        if (!blob_id(PyList_GET_ITEM(content, i)))
            return 0;
    if (subtree == Py_None) {
        if (k == KIND_DIR)
            return 0;
    } else if (!blob_id(subtree) || k != KIND_DIR) {
        return 0;
    }
    *kind = k;
    return 1;
}

/* The shared owner tuple (mode, uid, gid, user, group, device) for these
 * fields: from the table, added to it while it holds fewer than `shared_max`.
 * A new reference, or NULL with an exception set. */
static PyObject *
shared_owner(PyObject **f, PyObject *shared, Py_ssize_t shared_max)
{
    PyObject *owner, *found;
    owner = PyTuple_Pack(6, f[2], f[3], f[4], f[5], f[6], f[12]);
    if (owner == NULL)
        return NULL;
    found = PyDict_GetItemWithError(shared, owner);
    if (found != NULL) {
        Py_INCREF(found);
        Py_DECREF(owner);
        return found;
    }
    if (PyErr_Occurred() || (PyDict_GET_SIZE(shared) < shared_max && PyDict_SetItem(shared, owner, owner) < 0)) {
        Py_DECREF(owner);
        return NULL;
    }
    return owner;
}

/* One node, or Py_None (borrowed, not increfed) if it is not accepted here,
 * or NULL with an exception set. */
static PyObject *
build(PyTypeObject *node_cls, PyObject *raw, PyObject *kinds, PyObject *shared, Py_ssize_t shared_max,
      PyObject *xattrs_fn)
{
    PyObject **f, *owner, *xattrs, *content, *node, *type;
    long kind;
    int i;
    if (!PyList_Check(raw) || PyList_GET_SIZE(raw) != NODE_FIELDS)  /* as `msgcodec.as_list` */
        return Py_None;
    f = ((PyListObject *)raw)->ob_item;
    if (!fields_ok(f, &kind) || kind >= PyTuple_GET_SIZE(kinds))
        return Py_None;
    type = PyTuple_GET_ITEM(kinds, kind);
    if (type == Py_None)
        return Py_None;
    if (PyList_GET_SIZE(f[14]) == 0) {
        xattrs = PyTuple_New(0);
    } else {
        xattrs = PyObject_CallOneArg(xattrs_fn, f[14]);
        if (xattrs == NULL) {  /* the reference raises its own error for these */
            PyErr_Clear();
            return Py_None;
        }
    }
    if (xattrs == NULL)
        return NULL;
    content = PyList_AsTuple(f[16]);
    owner = content == NULL ? NULL : shared_owner(f, shared, shared_max);
    node = owner == NULL ? NULL : node_cls->tp_alloc(node_cls, NODE_FIELDS);
    if (node == NULL) {
        Py_DECREF(xattrs);
        Py_XDECREF(content);
        Py_XDECREF(owner);
        return NULL;
    }
    /* name, type, then mode, uid, gid, user, group from the shared owner */
    Py_INCREF(f[0]);
    PyTuple_SET_ITEM(node, 0, f[0]);
    Py_INCREF(type);
    PyTuple_SET_ITEM(node, 1, type);
    for (i = 0; i < 5; i++) {
        Py_INCREF(PyTuple_GET_ITEM(owner, i));
        PyTuple_SET_ITEM(node, 2 + i, PyTuple_GET_ITEM(owner, i));
    }
    for (i = 7; i < 12; i++) {  /* mtime, ctime, size, inode, links */
        Py_INCREF(f[i]);
        PyTuple_SET_ITEM(node, i, f[i]);
    }
    Py_INCREF(PyTuple_GET_ITEM(owner, 5));
    PyTuple_SET_ITEM(node, 12, PyTuple_GET_ITEM(owner, 5));  /* device id */
    Py_INCREF(f[13]);
    PyTuple_SET_ITEM(node, 13, f[13]);
    PyTuple_SET_ITEM(node, 14, xattrs);  /* the new references are the node's */
    Py_INCREF(f[15]);
    PyTuple_SET_ITEM(node, 15, f[15]);
    PyTuple_SET_ITEM(node, 16, content);
    Py_INCREF(f[17]);
    PyTuple_SET_ITEM(node, 17, f[17]);
    Py_DECREF(owner);
    return node;
}

PyDoc_STRVAR(decode_doc,
"decode(raw_nodes, node_cls, kinds, shared, shared_max, xattrs) -> tuple | None\n\n"
"The nodes of one tree, built as `Node.from_list` builds them, if every node is\n"
"accepted and the names strictly increase; otherwise None.");

static PyObject *
decode(PyObject *module, PyObject *args)
{
    PyObject *raw_nodes, *kinds, *shared, *xattrs_fn, *result, *node, *prev_name = NULL;
    PyTypeObject *node_cls;
    Py_ssize_t shared_max, i, n;
    (void)module;
    if (!PyArg_ParseTuple(args, "O!O!O!O!nO:decode", &PyList_Type, &raw_nodes, &PyType_Type, &node_cls,
                          &PyTuple_Type, &kinds, &PyDict_Type, &shared, &shared_max, &xattrs_fn))
        return NULL;
    if (!PyType_IsSubtype(node_cls, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "node_cls must be a tuple type");
        return NULL;
    }
    n = PyList_GET_SIZE(raw_nodes);
    result = PyTuple_New(n);
    if (result == NULL)
        return NULL;
    for (i = 0; i < n; i++) {
        /* the list cannot change under us: nothing here runs Python code
           except `xattrs`, which gets its own node's list */
        node = build(node_cls, PyList_GET_ITEM(raw_nodes, i), kinds, shared, shared_max, xattrs_fn);
        if (node == NULL) {
            Py_DECREF(result);
            return NULL;
        }
        if (node == Py_None
            || (prev_name != NULL && compare_names(prev_name, PyTuple_GET_ITEM(node, 0)) >= 0)) {
            if (node != Py_None)
                Py_DECREF(node);
            Py_DECREF(result);
            Py_RETURN_NONE;
        }
        prev_name = PyTuple_GET_ITEM(node, 0);
        PyTuple_SET_ITEM(result, i, node);
    }
    return result;
}

static PyMethodDef methods[] = {
    {"decode", decode, METH_VARARGS, decode_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "keep.protocol._nodes", "The compiled fast path of keep.protocol.tree.", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__nodes(void)
{
    PyObject *m = PyModule_Create(&module_def), *limits;
    if (m == NULL)
        return NULL;
    limits = Py_BuildValue("(nnnnn)", (Py_ssize_t)NODE_FIELDS, (Py_ssize_t)NAME_MAX_BYTES,
                           (Py_ssize_t)USER_NAME_MAX, (Py_ssize_t)BLOB_ID_SIZE, (Py_ssize_t)CONTENT_MAX);
    if (limits == NULL || PyModule_AddObjectRef(m, "LIMITS", limits) < 0) {
        Py_XDECREF(limits);
        Py_DECREF(m);
        return NULL;
    }
    Py_DECREF(limits);
    return m;
}
