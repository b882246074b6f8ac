/* The tree pass of a session tree's fold in C: the twin of SessionTree._fold_tree_py in
 * sessiontree.py, which documents what it computes. Same inputs (the columns of a batch),
 * same state (the tree's open calls, the namer's memos), same result (per signature, the
 * time its calls spent in their callees); only the cost differs. It is the sidecar's
 * hottest loop: one iteration per recorded call.
 *
 * Everything rare goes back to Python, so the policy stays in one place: a memo miss
 * (namer.leaf, namer.inner, namer.prefixed, namer.union, namer.leaf_paths), error raise
 * sites climbing (tree._climb, tree._settle), and a child added out of start order or past
 * MAX_KIDS (sessiontree._add_kid).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* Positions of an open call's state (sessiontree.O_*). */
enum { O_FID, O_T0, O_CHILD_NS, O_ERR_CHILD, O_FOLD, O_KIDS, O_KID_T0, O_PATHS, O_WAITERS,
       O_LEN };

/* Set once by configure(): sessiontree's constants and its out-of-line helper. */
static PyObject *ERROR_ = NULL, *INCOMPLETE_ = NULL, *EMPTY_FOLD = NULL, *ADD_KID = NULL;
static Py_ssize_t MAX_KIDS = 1024;

static PyObject *
configure(PyObject *self, PyObject *args)
{
    PyObject *error, *incomplete, *empty, *add_kid;
    Py_ssize_t max_kids;
    if (!PyArg_ParseTuple(args, "OOSnO", &error, &incomplete, &empty, &max_kids, &add_kid))
        return NULL;
    Py_INCREF(error); Py_XSETREF(ERROR_, error);
    Py_INCREF(incomplete); Py_XSETREF(INCOMPLETE_, incomplete);
    Py_INCREF(empty); Py_XSETREF(EMPTY_FOLD, empty);
    Py_INCREF(add_kid); Py_XSETREF(ADD_KID, add_kid);
    MAX_KIDS = max_kids;
    Py_RETURN_NONE;
}

/* memo[key] or method(*args) (a new reference); the key is borrowed. */
static PyObject *
memo_or(PyObject *memo, PyObject *key, PyObject *namer, const char *method, PyObject *a,
        PyObject *b, PyObject *c)
{
    PyObject *v = PyDict_GetItemWithError(memo, key);
    if (v != NULL) {
        Py_INCREF(v);
        return v;
    }
    if (PyErr_Occurred())
        return NULL;
    if (c != NULL)
        return PyObject_CallMethod(namer, method, "OOO", a, b, c);
    if (b != NULL)
        return PyObject_CallMethod(namer, method, "OO", a, b);
    return PyObject_CallMethod(namer, method, "O", a);
}

/* d[key] = d.get(key, 0) + v */
static int
add_to(PyObject *d, PyObject *key, PyObject *v)
{
    PyObject *old = PyDict_GetItemWithError(d, key);
    if (old == NULL) {
        if (PyErr_Occurred())
            return -1;
        return PyDict_SetItem(d, key, v);
    }
    PyObject *sum = PyNumber_Add(old, v);
    if (sum == NULL)
        return -1;
    int r = PyDict_SetItem(d, key, sum);
    Py_DECREF(sum);
    return r;
}

static PyObject *
fold_tree(PyObject *self, PyObject *args)
{
    PyObject *tree, *cols[10];
    if (!PyArg_ParseTuple(args, "OO!O!O!O!O!O!O!O!O!O!", &tree,
                          &PyList_Type, &cols[0], &PyList_Type, &cols[1], &PyList_Type, &cols[2],
                          &PyList_Type, &cols[3], &PyList_Type, &cols[4], &PyList_Type, &cols[5],
                          &PyList_Type, &cols[6], &PyList_Type, &cols[7], &PyList_Type, &cols[8],
                          &PyList_Type, &cols[9]))
        return NULL;
    if (ERROR_ == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_fold.configure() was not called");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(cols[0]);
    for (int k = 1; k < 10; k++)
        if (PyList_GET_SIZE(cols[k]) < n)
            n = PyList_GET_SIZE(cols[k]);  /* zip() stops at the shortest */

    PyObject *ses = NULL, *namer = NULL, *opened = NULL, *leaves = NULL, *leaf_sets = NULL;
    PyObject *inners = NULL, *prefixes = NULL, *unions = NULL, *minus = NULL;
    PyObject *root_paths = NULL, *root_digest = NULL;  /* the root's, if it went by */
    PyObject *result = NULL;
    PyObject *node = NULL, *digest = NULL, *paths = NULL, *up = NULL;

    if (!(ses = PyObject_GetAttrString(tree, "ses")) ||
            !(namer = PyObject_GetAttrString(tree, "namer")) ||
            !(opened = PyObject_GetAttrString(tree, "_open")) ||
            !(leaves = PyObject_GetAttrString(namer, "leaves")) ||
            !(leaf_sets = PyObject_GetAttrString(namer, "leaf_sets")) ||
            !(inners = PyObject_GetAttrString(namer, "inners")) ||
            !(prefixes = PyObject_GetAttrString(namer, "prefixes")) ||
            !(unions = PyObject_GetAttrString(namer, "unions")) ||
            !(minus = PyDict_New()))
        goto done;
    if (!PyDict_Check(opened) || !PyDict_Check(leaves) || !PyDict_Check(leaf_sets) ||
            !PyDict_Check(inners) || !PyDict_Check(prefixes) || !PyDict_Check(unions)) {
        PyErr_SetString(PyExc_TypeError, "a session tree's state must be dicts");
        goto done;
    }

    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *cid = PyList_GET_ITEM(cols[0], i), *par = PyList_GET_ITEM(cols[1], i);
        PyObject *fid = PyList_GET_ITEM(cols[2], i), *pfid = PyList_GET_ITEM(cols[3], i);
        PyObject *in_s = PyList_GET_ITEM(cols[4], i), *out_s = PyList_GET_ITEM(cols[5], i);
        PyObject *res = PyList_GET_ITEM(cols[6], i), *exc = PyList_GET_ITEM(cols[7], i);
        PyObject *t0 = PyList_GET_ITEM(cols[8], i), *d = PyList_GET_ITEM(cols[9], i);
        int is_error = PyObject_RichCompareBool(res, ERROR_, Py_EQ);
        if (is_error < 0)
            goto done;

        /* node = opened.pop(cid, None) (a new reference or NULL) */
        node = PyDict_GetItemWithError(opened, cid);
        if (node != NULL) {
            Py_INCREF(node);
            if (PyDict_DelItem(opened, cid) < 0)
                goto done;
            if (!PyList_CheckExact(node) || PyList_GET_SIZE(node) != O_LEN) {
                PyErr_SetString(PyExc_TypeError, "an open call's state must be a list");
                goto done;
            }
        } else if (PyErr_Occurred()) {
            goto done;
        }

        if (node == NULL) {
            if (!(digest = memo_or(leaves, fid, namer, "leaf", fid, NULL, NULL)) ||
                    !(paths = memo_or(leaf_sets, fid, namer, "leaf_paths", fid, NULL, NULL)))
                goto done;
        } else {
            int incomplete = PyObject_RichCompareBool(res, INCOMPLETE_, Py_EQ);
            if (incomplete < 0)
                goto done;
            if (!incomplete) {
                PyObject *child_ns = PyList_GET_ITEM(node, O_CHILD_NS);
                int lt = PyObject_RichCompareBool(child_ns, d, Py_LT);
                if (lt < 0)
                    goto done;
                PyObject *key = PyTuple_Pack(6, fid, pfid, in_s, out_s, res, exc);
                if (key == NULL)
                    goto done;
                int r = add_to(minus, key, lt ? child_ns : d);
                Py_DECREF(key);
                if (r < 0)
                    goto done;
            }
            PyObject *kids = PyList_GET_ITEM(node, O_KIDS), *fold = PyList_GET_ITEM(node, O_FOLD);
            if (!PyList_CheckExact(kids)) {
                PyErr_SetString(PyExc_TypeError, "an open call's kids must be a list");
                goto done;
            }
            Py_ssize_t nk = PyList_GET_SIZE(kids);
            PyObject *key = PyTuple_New(2 + nk);
            if (key == NULL)
                goto done;
            Py_INCREF(fid); PyTuple_SET_ITEM(key, 0, fid);
            Py_INCREF(fold); PyTuple_SET_ITEM(key, 1, fold);
            for (Py_ssize_t k = 0; k < nk; k++) {
                PyObject *kid = PyList_GET_ITEM(kids, k);
                Py_INCREF(kid);
                PyTuple_SET_ITEM(key, 2 + k, kid);
            }
            digest = memo_or(inners, key, namer, "inner", fid, fold, kids);
            Py_DECREF(key);
            if (digest == NULL)
                goto done;
            PyObject *below = PyList_GET_ITEM(node, O_PATHS);
            if (!(key = PyTuple_Pack(2, fid, below)))
                goto done;
            paths = memo_or(prefixes, key, namer, "prefixed", fid, below, NULL);
            Py_DECREF(key);
            if (paths == NULL)
                goto done;
            PyObject *waiters = PyList_GET_ITEM(node, O_WAITERS);
            int has = PyObject_IsTrue(waiters);
            if (has < 0)
                goto done;
            if (has && !(up = PyObject_CallMethod(tree, "_climb", "OOO", waiters, fid, res)))
                goto done;
        }

        if (is_error) {
            int err_child = 0;
            if (node != NULL && (err_child = PyObject_IsTrue(
                    PyList_GET_ITEM(node, O_ERR_CHILD))) < 0)
                goto done;
            if (!err_child) {
                PyObject *one = PyTuple_Pack(1, fid), *minus1 = PyLong_FromLong(-1);
                PyObject *site = (one && minus1) ? PyTuple_Pack(4, exc, fid, one, minus1) : NULL;
                Py_XDECREF(one);
                Py_XDECREF(minus1);
                if (site == NULL)
                    goto done;
                int r;
                if (up == NULL) {
                    if ((up = PyDict_New()) == NULL) {
                        Py_DECREF(site);
                        goto done;
                    }
                }
                PyObject *uno = PyLong_FromLong(1);
                r = uno ? add_to(up, site, uno) : -1;
                Py_XDECREF(uno);
                Py_DECREF(site);
                if (r < 0)
                    goto done;
            }
        }
        Py_CLEAR(node);

        int is_root = PyObject_RichCompareBool(cid, ses, Py_EQ);
        if (is_root < 0)
            goto done;
        if (is_root) {
            Py_XSETREF(root_paths, paths);
            Py_XSETREF(root_digest, digest);
            paths = digest = NULL;
        } else {
            int has_par = PyObject_IsTrue(par);
            if (has_par < 0)
                goto done;
            int other = 0;
            if (has_par && (other = PyObject_RichCompareBool(par, cid, Py_NE)) < 0)
                goto done;
            if (has_par && other) {
                PyObject *p = PyDict_GetItemWithError(opened, par);
                if (p == NULL) {
                    if (PyErr_Occurred())
                        goto done;
                    PyObject *kids = PyList_New(1), *kid_t0 = PyList_New(1);
                    PyObject *state = PyList_New(O_LEN);
                    if (!kids || !kid_t0 || !state) {
                        Py_XDECREF(kids); Py_XDECREF(kid_t0); Py_XDECREF(state);
                        goto done;
                    }
                    PyList_SET_ITEM(kids, 0, digest); digest = NULL;
                    Py_INCREF(t0); PyList_SET_ITEM(kid_t0, 0, t0);
                    PyObject *err = is_error ? Py_True : Py_False;
                    Py_INCREF(pfid); PyList_SET_ITEM(state, O_FID, pfid);
                    Py_INCREF(t0); PyList_SET_ITEM(state, O_T0, t0);
                    Py_INCREF(d); PyList_SET_ITEM(state, O_CHILD_NS, d);
                    Py_INCREF(err); PyList_SET_ITEM(state, O_ERR_CHILD, err);
                    Py_INCREF(EMPTY_FOLD); PyList_SET_ITEM(state, O_FOLD, EMPTY_FOLD);
                    PyList_SET_ITEM(state, O_KIDS, kids);
                    PyList_SET_ITEM(state, O_KID_T0, kid_t0);
                    PyList_SET_ITEM(state, O_PATHS, paths); paths = NULL;
                    if (up == NULL) {
                        Py_INCREF(Py_None);
                        PyList_SET_ITEM(state, O_WAITERS, Py_None);
                    } else {
                        PyList_SET_ITEM(state, O_WAITERS, up);
                        up = NULL;
                    }
                    int r = PyDict_SetItem(opened, par, state);
                    Py_DECREF(state);
                    if (r < 0)
                        goto done;
                    continue;
                }
                Py_INCREF(p);
                node = p;  /* held in `node` so that `goto done` releases it */
                if (!PyList_CheckExact(p) || PyList_GET_SIZE(p) != O_LEN) {
                    PyErr_SetString(PyExc_TypeError, "an open call's state must be a list");
                    goto done;
                }
                int lt = PyObject_RichCompareBool(t0, PyList_GET_ITEM(p, O_T0), Py_LT);
                if (lt < 0)
                    goto done;
                if (lt) {
                    Py_INCREF(t0);
                    PyList_SetItem(p, O_T0, t0);
                }
                PyObject *sum = PyNumber_Add(PyList_GET_ITEM(p, O_CHILD_NS), d);
                if (sum == NULL)
                    goto done;
                PyList_SetItem(p, O_CHILD_NS, sum);
                if (is_error) {
                    Py_INCREF(Py_True);
                    PyList_SetItem(p, O_ERR_CHILD, Py_True);
                }
                PyObject *kids = PyList_GET_ITEM(p, O_KIDS), *kid_t0 = PyList_GET_ITEM(p, O_KID_T0);
                if (!PyList_CheckExact(kids) || !PyList_CheckExact(kid_t0) ||
                        PyList_GET_SIZE(kids) == 0 || PyList_GET_SIZE(kid_t0) == 0) {
                    PyErr_SetString(PyExc_TypeError, "an open call's kids must be a list");
                    goto done;
                }
                int ne = PyObject_RichCompareBool(
                    PyList_GET_ITEM(kids, PyList_GET_SIZE(kids) - 1), digest, Py_NE);
                if (ne < 0)
                    goto done;
                if (ne) {
                    int ge = PyObject_RichCompareBool(
                        t0, PyList_GET_ITEM(kid_t0, PyList_GET_SIZE(kid_t0) - 1), Py_GE);
                    if (ge < 0)
                        goto done;
                    if (ge && PyList_GET_SIZE(kids) < MAX_KIDS) {
                        if (PyList_Append(kids, digest) < 0 || PyList_Append(kid_t0, t0) < 0)
                            goto done;
                    } else {
                        PyObject *r = PyObject_CallFunctionObjArgs(ADD_KID, p, digest, t0, NULL);
                        if (r == NULL)
                            goto done;
                        Py_DECREF(r);
                    }
                }
                PyObject *below = PyList_GET_ITEM(p, O_PATHS);
                if (below != paths) {
                    PyObject *key = PyTuple_Pack(2, below, paths);
                    if (key == NULL)
                        goto done;
                    PyObject *u = memo_or(unions, key, namer, "union", below, paths, NULL);
                    Py_DECREF(key);
                    if (u == NULL)
                        goto done;
                    PyList_SetItem(p, O_PATHS, u);
                }
                if (up != NULL) {
                    int has = PyObject_IsTrue(up);
                    if (has < 0)
                        goto done;
                    if (has) {
                        PyObject *waiting = PyList_GET_ITEM(p, O_WAITERS);
                        if (waiting == Py_None) {
                            Py_INCREF(up);
                            PyList_SetItem(p, O_WAITERS, up);
                        } else {
                            if (!PyDict_Check(waiting)) {
                                PyErr_SetString(PyExc_TypeError, "waiters must be a dict");
                                goto done;
                            }
                            PyObject *k, *c;
                            Py_ssize_t pos = 0;
                            while (PyDict_Next(up, &pos, &k, &c))
                                if (add_to(waiting, k, c) < 0)
                                    goto done;
                        }
                    }
                }
                Py_CLEAR(node);
                Py_CLEAR(digest);
                Py_CLEAR(paths);
                Py_CLEAR(up);
                continue;
            }
        }
        if (up != NULL) {
            int has = PyObject_IsTrue(up);
            if (has < 0)
                goto done;
            if (has) {
                PyObject *r = PyObject_CallMethod(tree, "_settle", "O", up);
                if (r == NULL)
                    goto done;
                Py_DECREF(r);
            }
        }
        Py_CLEAR(digest);
        Py_CLEAR(paths);
        Py_CLEAR(up);
    }
    if (root_paths != NULL) {
        if (PyObject_SetAttrString(tree, "_root_seen", Py_True) < 0 ||
                PyObject_SetAttrString(tree, "paths", root_paths) < 0 ||
                PyObject_SetAttrString(tree, "digest", root_digest) < 0)
            goto done;
    }
    result = minus;
    minus = NULL;
done:
    Py_XDECREF(node); Py_XDECREF(digest); Py_XDECREF(paths); Py_XDECREF(up);
    Py_XDECREF(root_paths); Py_XDECREF(root_digest);
    Py_XDECREF(ses); Py_XDECREF(namer); Py_XDECREF(opened); Py_XDECREF(leaves);
    Py_XDECREF(leaf_sets); Py_XDECREF(inners); Py_XDECREF(prefixes); Py_XDECREF(unions);
    Py_XDECREF(minus);
    return result;
}

static PyMethodDef methods[] = {
    {"configure", configure, METH_VARARGS,
     "configure(ERROR, INCOMPLETE, empty_fold, MAX_KIDS, add_kid): sessiontree's constants."},
    {"fold_tree", fold_tree, METH_VARARGS,
     "fold_tree(tree, cids, pars, fids, pfids, ins, outs, ress, excs, t0s, durs) -> minus: "
     "SessionTree._fold_tree_py in C."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fold", NULL, -1, methods};

PyMODINIT_FUNC
PyInit__fold(void)
{
    return PyModule_Create(&module);
}
