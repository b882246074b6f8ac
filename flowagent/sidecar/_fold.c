/* The tree pass of a session tree's fold in C: the twin of SessionTree._fold_tree_py in
 * sessiontree.py, which documents what it computes. Same inputs (the columns of a batch),
 * same state (the tree's open calls, the namer's memos), same result (per signature, the
 * time its calls spent in their callees); only the cost differs. It is the sidecar's
 * hottest loop: one iteration per recorded call.
 *
 * Everything rare goes back to Python, so the policy stays in one place: a memo miss
 * (namer.leaf, namer.inner, namer.prefixed, namer.union, namer.leaf_paths), error raise
 * sites climbing (tree._climb, tree._settle), and a child added out of start order or past
 * MAX_KIDS (sessiontree._add_kid). Only the cost differs from the twin: the values are read
 * as C integers from the batch's decoded block, a batch's memo keyed by object identity
 * stands in front of the namer's, and the states of closed calls are reused.
 *
 * Beside it, the two other per-call loops of the ingest, each the twin of Python code that
 * documents it: decode_columns (wire._columns: a frame's call block into its columns) and
 * count_sigs (SessionTree._count_sigs_py: the per-signature statistics). Every function
 * here declines (returns None or False, having changed nothing) a batch holding a value
 * that does not fit in int64, and the Python twin handles it.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <limits.h>
#include <stdint.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* Positions of an open call's state (sessiontree.O_*). */
enum { O_FID, O_T0, O_CHILD_NS, O_ERR_CHILD, O_FOLD, O_KIDS, O_KID_T0, O_PATHS, O_WAITERS,
       O_LEN };

/* Fields of a call block (wire.CALL_FIELDS); a raw block (decode_columns) has durations
 * in place of the end times (F_T1) and the end times after them (F_END). */
enum { N_FIELDS = 13, RAW_FIELDS = 14, F_CID = 0, F_PAR = 1, F_FID = 3, F_PFID = 4, F_IN = 5,
       F_OUT = 6, F_RES = 7, F_EXC = 8, F_T0 = 9, F_T1 = 10, F_CPU = 12, F_END = 13 };

/* The int64 columns of a raw block (decode_columns) of n calls, or NULL (no error set) when
 * raw is None or not a block of n calls. */
static const int64_t *
raw_block(PyObject *raw, Py_ssize_t n)
{
    if (raw == NULL || !PyBytes_CheckExact(raw) || PyBytes_GET_SIZE(raw) != n * RAW_FIELDS * 8)
        return NULL;
    return (const int64_t *)PyBytes_AS_STRING(raw);
}

/* Set once by configure(): sessiontree's constants and its out-of-line helper. */
static PyObject *ERROR_ = NULL, *INCOMPLETE_ = NULL, *EMPTY_FOLD = NULL, *ADD_KID = NULL;
static Py_ssize_t MAX_KIDS = 1024;
static long long ERROR_C = 1, INCOMPLETE_C = 3;

/* o as a C integer: 0, or -1 where it is not an int that fits (no error set). */
static inline int
as_ll(PyObject *o, long long *out)
{
    int overflow = 0;
    if (!PyLong_CheckExact(o))
        return -1;
    *out = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow || (*out == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return -1;
    }
    return 0;
}

/* a < b (op Py_LT) or a >= b (Py_GE) with a known as a C integer: compared in C when b
 * fits too (the state holds ints by construction), otherwise the Python way. */
static inline int
cmp_ll(PyObject *a, long long a_c, PyObject *b, int op)
{
    long long b_c;
    if (as_ll(b, &b_c) < 0)
        return PyObject_RichCompareBool(a, b, op);
    return op == Py_LT ? a_c < b_c : a_c >= b_c;
}

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
    if (as_ll(error, &ERROR_C) < 0 || as_ll(incomplete, &INCOMPLETE_C) < 0) {
        PyErr_SetString(PyExc_TypeError, "result codes must be ints");
        return NULL;
    }
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

/* The signature columns of fold_tree's arguments: fid, pfid, in, out, result, exception. */
static const int SIG_COLS[6] = {2, 3, 4, 5, 6, 7};

typedef struct {
    Py_ssize_t first;   /* the call whose signature this is */
    long long sum;
    PyObject *big;      /* the sum as a Python int, once it left int64 (else NULL) */
} MinusEntry;

typedef struct {
    MinusEntry *e;
    Py_ssize_t *slot, cap, len;
} MinusTable;

static int
minus_init(MinusTable *t, Py_ssize_t n)
{
    t->cap = 16;
    while (t->cap < 2 * n)
        t->cap <<= 1;
    t->len = 0;
    t->e = PyMem_Malloc(sizeof(MinusEntry) * (size_t)(n ? n : 1));
    t->slot = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)t->cap);
    if (t->e == NULL || t->slot == NULL)
        return -1;
    for (Py_ssize_t s = 0; s < t->cap; s++)
        t->slot[s] = -1;
    return 0;
}

static void
minus_free(MinusTable *t)
{
    if (t->e != NULL)
        for (Py_ssize_t j = 0; j < t->len; j++)
            Py_XDECREF(t->e[j].big);
    PyMem_Free(t->e);
    PyMem_Free(t->slot);
    t->e = NULL;
    t->slot = NULL;
}

static uint64_t mix(uint64_t h, uint64_t v);

/* minus[signature of call i] += v (v_c: v as a C integer, LLONG_MIN when not known) */
static int
minus_add(MinusTable *t, const long long *const *cp, Py_ssize_t i, PyObject *v,
          long long v_c)
{
    uint64_t h = 0;
    for (int k = 0; k < 6; k++)
        h = mix(h, (uint64_t)cp[SIG_COLS[k]][i]);
    Py_ssize_t s = (Py_ssize_t)(h & (uint64_t)(t->cap - 1)), j;
    for (;; s = (s + 1) & (t->cap - 1)) {
        j = t->slot[s];
        if (j < 0)
            break;
        Py_ssize_t f = t->e[j].first;
        int same = 1;
        for (int k = 0; k < 6 && same; k++)
            same = cp[SIG_COLS[k]][f] == cp[SIG_COLS[k]][i];
        if (same)
            break;
    }
    if (j < 0) {
        j = t->slot[s] = t->len++;
        t->e[j].first = i;
        t->e[j].sum = 0;
        t->e[j].big = NULL;
    }
    MinusEntry *e = &t->e[j];
    if (v_c == LLONG_MIN && as_ll(v, &v_c) < 0)
        v_c = LLONG_MIN;
    long long sum_c;
    if (e->big == NULL && v_c != LLONG_MIN && !__builtin_add_overflow(e->sum, v_c, &sum_c)) {
        e->sum = sum_c;
        return 0;
    }
    if (e->big == NULL && (e->big = PyLong_FromLongLong(e->sum)) == NULL)
        return -1;
    PyObject *sum = PyNumber_Add(e->big, v);
    if (sum == NULL)
        return -1;
    Py_SETREF(e->big, sum);
    return 0;
}

/* The table as the dict fold_tree returns: keys made of the first call's own objects. */
/* A new reference to the value of column k at row i: the list's object, or one made from
 * the C values where the column was left in the raw block (None in its place). */
static PyObject *
col_obj(PyObject *col, const long long *c, Py_ssize_t i)
{
    if (col == Py_None)
        return PyLong_FromLongLong(c[i]);
    PyObject *o = PyList_GET_ITEM(col, i);
    Py_INCREF(o);
    return o;
}

static int
minus_to_dict(MinusTable *t, PyObject **cols, const long long *const *cp, PyObject *minus)
{
    for (Py_ssize_t j = 0; j < t->len; j++) {
        Py_ssize_t f = t->e[j].first;
        PyObject *key = PyTuple_New(6);
        if (key == NULL)
            return -1;
        for (int k = 0; k < 6; k++) {
            PyObject *o = col_obj(cols[SIG_COLS[k]], cp[SIG_COLS[k]], f);
            if (o == NULL) {
                Py_DECREF(key);
                return -1;
            }
            PyTuple_SET_ITEM(key, k, o);
        }
        PyObject *v = t->e[j].big;
        if (v != NULL)
            Py_INCREF(v);
        else if ((v = PyLong_FromLongLong(t->e[j].sum)) == NULL) {
            Py_DECREF(key);
            return -1;
        }
        int r = PyDict_SetItem(minus, key, v);
        Py_DECREF(key);
        Py_DECREF(v);
        if (r < 0)
            return -1;
    }
    return 0;
}

/* A batch's memo in front of the namer's: the same lookups (leaf digest and paths by
 * function; inner digest by function, fold and child digests; paths prefixed by function and
 * the paths below; unions of two path sets), keyed by the function's number and the
 * *identity* of the objects, so that a hit costs no key tuple and no hash of one. It holds
 * a reference to every object of its keys (an address is not reused while it is in the
 * memo) and to every value. Equal objects give equal values, so a hit gives what the
 * namer's memo would (an equal object): only the cost differs. Full: emptied. */
enum { PM_LEAF = 1, PM_INNER, PM_PREFIX, PM_UNION };
#define PM_WORDS 6     /* an inner digest of up to PM_WORDS - 2 child runs */
#define PM_SLOTS 1024  /* emptied when half full */

typedef struct {
    int kind, len;
    unsigned objs;           /* bit k: w[k] is an object this entry holds */
    uint64_t w[PM_WORDS];
    PyObject *value, *value2;
} PMEntry;

typedef struct {
    PMEntry *e;
    Py_ssize_t used;
} PtrMemo;

static void
pm_clear(PtrMemo *m)
{
    if (m->e == NULL)
        return;
    for (Py_ssize_t s = 0; s < PM_SLOTS && m->used; s++) {
        PMEntry *x = &m->e[s];
        if (!x->kind)
            continue;
        for (int k = 0; k < x->len; k++)
            if (x->objs & (1u << k))
                Py_DECREF((PyObject *)(uintptr_t)x->w[k]);
        Py_XDECREF(x->value);
        Py_XDECREF(x->value2);
        x->kind = 0;
        m->used--;
    }
}

/* The entry of the key (kind, w[:len]): found (kind set) or the empty slot for it. */
static PMEntry *
pm_find(PtrMemo *m, int kind, int len, const uint64_t *w)
{
    uint64_t h = (uint64_t)kind;
    for (int k = 0; k < len; k++)
        h = mix(h, w[k]);
    for (Py_ssize_t s = (Py_ssize_t)(h >> 20) & (PM_SLOTS - 1);; s = (s + 1) & (PM_SLOTS - 1)) {
        PMEntry *x = &m->e[s];
        if (!x->kind)
            return x;
        if (x->kind == kind && x->len == len) {
            int k = 0;
            while (k < len && x->w[k] == w[k])
                k++;
            if (k == len)
                return x;
        }
    }
}

/* Remembers value (and value2) for the key that pm_find gave slot for (both references
 * taken). */
static void
pm_put(PtrMemo *m, PMEntry *slot, int kind, int len, const uint64_t *w, unsigned objs,
       PyObject *value, PyObject *value2)
{
    if (m->used >= PM_SLOTS / 2) {
        pm_clear(m);
        slot = pm_find(m, kind, len, w);
    }
    slot->kind = kind;
    slot->len = len;
    slot->objs = objs;
    for (int k = 0; k < len; k++) {
        slot->w[k] = w[k];
        if (objs & (1u << k))
            Py_INCREF((PyObject *)(uintptr_t)w[k]);
    }
    Py_INCREF(value);
    slot->value = value;
    Py_XINCREF(value2);
    slot->value2 = value2;
    m->used++;
}

#define PM_OBJ(o) ((uint64_t)(uintptr_t)(o))

/* The namer's method(a, b) for the pair key (kind, w0, w1), through the identity memo, then
 * the namer's own memo under the tuple (a, b) (a new reference, or NULL). `objs`: which of
 * w0, w1 are objects the entry holds. a and b are held while the namer's code may run. */
static PyObject *
pm_pair(PtrMemo *pm, int kind, uint64_t w0, uint64_t w1, unsigned objs, PyObject *memo,
        PyObject *namer, const char *method, PyObject *a, PyObject *b)
{
    uint64_t w[2] = {w0, w1};
    PMEntry *slot = pm_find(pm, kind, 2, w);
    if (slot->kind)
        return Py_NewRef(slot->value);
    PyObject *key = PyTuple_Pack(2, a, b);
    if (key == NULL)
        return NULL;
    Py_INCREF(a);
    Py_INCREF(b);
    PyObject *v = memo_or(memo, key, namer, method, a, b, NULL);
    Py_DECREF(key);
    if (v != NULL)  /* the slot looked up again: the namer's code may have filled the memo */
        pm_put(pm, pm_find(pm, kind, 2, w), kind, 2, w, objs, v, NULL);
    Py_DECREF(a);
    Py_DECREF(b);
    return v;
}

/* Open-call states (lists of O_LEN) and their child lists, reused: a state the pass popped
 * and folded that nothing else holds goes to a pool, its items None and its child lists
 * (held by nothing else either) emptied with their room kept, so that a new open call
 * allocates nothing. Only what no other code can see is pooled. */
#define POOL_STATES 256
#define POOL_LISTS 512
static PyObject *pool_states[POOL_STATES], *pool_lists[POOL_LISTS];
static Py_ssize_t n_pool_states = 0, n_pool_lists = 0;

/* An empty list (a new reference). */
static PyObject *
pooled_list(void)
{
    if (n_pool_lists)
        return pool_lists[--n_pool_lists];
    return PyList_New(0);
}

/* A list of O_LEN Nones (a new reference), filled with state_set. */
static PyObject *
pooled_state(void)
{
    if (n_pool_states)
        return pool_states[--n_pool_states];
    PyObject *st = PyList_New(O_LEN);
    if (st != NULL)
        for (int k = 0; k < O_LEN; k++)
            PyList_SET_ITEM(st, k, Py_NewRef(Py_None));
    return st;
}

/* Item k of a state := v (stolen), the old item released. */
static inline void
state_set(PyObject *st, int k, PyObject *v)
{
    PyObject *old = PyList_GET_ITEM(st, k);
    PyList_SET_ITEM(st, k, v);
    Py_DECREF(old);
}

/* Releases a folded state: pooled (with its child lists) where nothing else holds it. */
static void
recycle_state(PyObject *st)
{
    if (Py_REFCNT(st) != 1 || !PyList_CheckExact(st) || PyList_GET_SIZE(st) != O_LEN ||
            n_pool_states == POOL_STATES) {
        Py_DECREF(st);
        return;
    }
    PyObject *old[O_LEN];
    for (int k = 0; k < O_LEN; k++) {
        old[k] = PyList_GET_ITEM(st, k);
        PyList_SET_ITEM(st, k, Py_NewRef(Py_None));
    }
    for (int k = 0; k < O_LEN; k++) {
        PyObject *l = old[k];
        if ((k == O_KIDS || k == O_KID_T0) && Py_REFCNT(l) == 1 && PyList_CheckExact(l) &&
                n_pool_lists < POOL_LISTS) {
            Py_ssize_t n = PyList_GET_SIZE(l);
            Py_SET_SIZE(l, 0);  /* emptied first, its room kept */
            for (Py_ssize_t i = 0; i < n; i++)
                Py_DECREF(((PyListObject *)l)->ob_item[i]);
            pool_lists[n_pool_lists++] = l;
        } else {
            Py_DECREF(l);
        }
    }
    pool_states[n_pool_states++] = st;
}

/* ---- the open calls of one batch (a session tree's `_open` seen from C) -----------------
 * The calls a batch opens are kept here, keyed by their C cid, rather than in the tree's
 * dict of Python ints: most are closed in the same batch and never reach it. A cid not
 * here is looked for in the dict (the calls earlier batches left open); a key is in at most
 * one of the two. Entries are kept in the order they were opened, a closed one emptied
 * (state NULL), so that the ones still open at the end join the dict in the order the
 * Python pass would have inserted them. */
typedef struct {
    long long cid;
    PyObject *key;    /* the cid as a Python int (a new reference): the dict's key */
    PyObject *state;  /* the open call's state (a new reference), NULL once closed */
} OpenEntry;

typedef struct {
    OpenEntry *e;
    Py_ssize_t n, cap;
    Py_ssize_t *slot;  /* 1 + an entry's index, 0 empty */
    size_t mask;
} OpenTable;

static int
open_init(OpenTable *t, Py_ssize_t n)
{
    size_t want = 16;
    while (want < 2 * (size_t)(n + 1))
        want <<= 1;
    t->cap = n + 1;
    t->n = 0;
    t->mask = want - 1;
    t->e = PyMem_Malloc(sizeof(OpenEntry) * (size_t)t->cap);
    t->slot = PyMem_Calloc(want, sizeof(Py_ssize_t));
    return (t->e && t->slot) ? 0 : -1;
}

static void
open_free(OpenTable *t)
{
    for (Py_ssize_t j = 0; j < t->n; j++) {
        Py_XDECREF(t->e[j].key);
        Py_XDECREF(t->e[j].state);
    }
    PyMem_Free(t->e);
    PyMem_Free(t->slot);
    t->e = NULL;
    t->slot = NULL;
    t->n = 0;
}

/* The slot cid's entry is found through, or the empty one it would take. */
static Py_ssize_t *
open_slot(OpenTable *t, long long cid)
{
    size_t h = (size_t)(((uint64_t)cid * 0x9E3779B97F4A7C15ull) >> 17) & t->mask;
    for (;;) {
        Py_ssize_t *s = &t->slot[h];
        if (*s == 0 || t->e[*s - 1].cid == cid)
            return s;
        h = (h + 1) & t->mask;
    }
}

/* A new reference to cid's open state, taken out of the table (or the dict); NULL with no
 * error set when it is not open. */
static PyObject *
open_pop(OpenTable *t, PyObject *opened, long long cid, PyObject *key)
{
    Py_ssize_t *s = open_slot(t, cid);
    if (*s != 0) {
        OpenEntry *en = &t->e[*s - 1];
        PyObject *st = en->state;
        en->state = NULL;
        if (st != NULL)
            return st;
    }
    if (PyDict_GET_SIZE(opened) == 0)
        return NULL;
    PyObject *st = PyDict_GetItemWithError(opened, key);
    if (st == NULL)
        return NULL;
    Py_INCREF(st);
    if (PyDict_DelItem(opened, key) < 0) {
        Py_DECREF(st);
        return NULL;
    }
    return st;
}

/* A borrowed reference to cid's open state (held by the table or the dict), NULL with no
 * error set when it is not open. key: cid as a Python int, or NULL (made if needed). */
static PyObject *
open_get(OpenTable *t, PyObject *opened, long long cid, PyObject *key)
{
    Py_ssize_t *s = open_slot(t, cid);
    if (*s != 0 && t->e[*s - 1].state != NULL)
        return t->e[*s - 1].state;
    if (PyDict_GET_SIZE(opened) == 0)
        return NULL;
    if (key != NULL)
        return PyDict_GetItemWithError(opened, key);
    if ((key = PyLong_FromLongLong(cid)) == NULL)
        return NULL;
    PyObject *st = PyDict_GetItemWithError(opened, key);
    Py_DECREF(key);
    return st;  /* the dict holds it */
}

/* cid opens with state (stolen); cid is open in neither the table nor the dict. key: cid
 * as a Python int, or NULL (made when it joins the dict). */
static void
open_put(OpenTable *t, long long cid, PyObject *key, PyObject *state)
{
    Py_ssize_t *s = open_slot(t, cid);
    if (*s != 0) {
        OpenEntry *en = &t->e[*s - 1];
        Py_CLEAR(en->key);  /* closed earlier in the batch: it opens again at the end */
    }
    OpenEntry *en = &t->e[t->n];
    en->cid = cid;
    Py_XINCREF(key);
    en->key = key;
    en->state = state;
    *s = ++t->n;
}

/* The calls still open join the dict, in the order they were opened. */
static int
open_flush(OpenTable *t, PyObject *opened)
{
    int rc = 0;
    for (Py_ssize_t j = 0; j < t->n; j++) {
        OpenEntry *en = &t->e[j];
        if (en->state == NULL || rc < 0)
            continue;
        if (en->key == NULL && (en->key = PyLong_FromLongLong(en->cid)) == NULL)
            rc = -1;
        else if (PyDict_SetItem(opened, en->key, en->state) < 0)
            rc = -1;
    }
    return rc;
}

static PyObject *
fold_tree(PyObject *self, PyObject *args)
{
    PyObject *tree, *cols[10], *raw = NULL;
    if (!PyArg_ParseTuple(args, "OO!OO!O!OOO!O!O!O!|O", &tree,
                          &PyList_Type, &cols[0], &cols[1], &PyList_Type, &cols[2],
                          &PyList_Type, &cols[3], &cols[4], &cols[5],
                          &PyList_Type, &cols[6], &PyList_Type, &cols[7], &PyList_Type, &cols[8],
                          &PyList_Type, &cols[9], &raw))
        return NULL;
    /* the parents, callers' ins and outs may be left in the raw block (None): read there */
    int left_out = 0;
    for (int k = 1; k < 6; k += (k == 1 ? 3 : 1)) {
        if (cols[k] == Py_None)
            left_out = 1;
        else if (!PyList_Check(cols[k])) {
            PyErr_SetString(PyExc_TypeError, "a column must be a list or None");
            return NULL;
        }
    }
    if (ERROR_ == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_fold.configure() was not called");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(cols[0]);
    for (int k = 1; k < 10; k++)
        if (cols[k] != Py_None && PyList_GET_SIZE(cols[k]) < n)
            n = PyList_GET_SIZE(cols[k]);  /* zip() stops at the shortest */

    /* Every column as C integers (compared in the loop, or the signature a call's callee
     * time is summed under): read from the raw block the columns were decoded from (the
     * columns of a whole decoded batch, every list as long as it), else converted; None
     * (nothing changed) when one does not fit: the Python pass runs. */
    static const int RAW_OF[10] = {F_CID, F_PAR, F_FID, F_PFID, F_IN, F_OUT, F_RES, F_EXC, F_T0,
                                   F_T1};
    const long long *cp[10];
    long long *cv = NULL, ses_c;
    const int64_t *block = raw_block(raw, n);
    for (int k = 0; block != NULL && k < 10; k++)
        if (cols[k] != Py_None && PyList_GET_SIZE(cols[k]) != n)
            block = NULL;
    if (block == NULL && left_out)
        Py_RETURN_NONE;  /* the Python pass, with every list */
    if (block != NULL) {
        for (int k = 0; k < 10; k++)
            cp[k] = (const long long *)(block + RAW_OF[k] * n);
    } else {
        if ((cv = PyMem_Malloc(sizeof(long long) * 10 * (size_t)(n ? n : 1))) == NULL)
            return PyErr_NoMemory();
        for (int k = 0; k < 10; k++) {
            for (Py_ssize_t i = 0; i < n; i++)
                if (as_ll(PyList_GET_ITEM(cols[k], i), &cv[k * n + i]) < 0) {
                    PyMem_Free(cv);
                    Py_RETURN_NONE;
                }
            cp[k] = cv + k * n;
        }
    }
    const long long *cid_c = cp[0], *par_c = cp[1], *res_c = cp[6], *t0_c = cp[8];
    const long long *d_c = cp[9];
    /* minus (per signature, its calls' time in their callees) summed in a C table first:
     * entries in first-seen order, found through slots keyed by the signature's values. */
    MinusTable mt = {0};
    OpenTable ot = {0};
    PtrMemo pm = {PyMem_Calloc(PM_SLOTS, sizeof(PMEntry)), 0};
    if (minus_init(&mt, n) < 0 || open_init(&ot, n) < 0 || pm.e == NULL) {
        PyMem_Free(cv);
        minus_free(&mt);
        open_free(&ot);
        PyMem_Free(pm.e);
        return PyErr_NoMemory();
    }
    const long long *fid_c = cp[2];
    uint64_t w[PM_WORDS];
    PMEntry *slot;

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
    if (as_ll(ses, &ses_c) < 0) {
        PyMem_Free(cv);
        cv = NULL;
        result = Py_None;
        Py_INCREF(result);
        goto done;
    }
    if (!PyDict_Check(opened) || !PyDict_Check(leaves) || !PyDict_Check(leaf_sets) ||
            !PyDict_Check(inners) || !PyDict_Check(prefixes) || !PyDict_Check(unions)) {
        PyErr_SetString(PyExc_TypeError, "a session tree's state must be dicts");
        goto done;
    }

    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *cid = PyList_GET_ITEM(cols[0], i);
        PyObject *par = cols[1] == Py_None ? NULL : PyList_GET_ITEM(cols[1], i);
        PyObject *fid = PyList_GET_ITEM(cols[2], i), *pfid = PyList_GET_ITEM(cols[3], i);
        PyObject *res = PyList_GET_ITEM(cols[6], i), *exc = PyList_GET_ITEM(cols[7], i);
        PyObject *t0 = PyList_GET_ITEM(cols[8], i), *d = PyList_GET_ITEM(cols[9], i);
        int is_error = res_c[i] == ERROR_C;

        /* node = opened.pop(cid, None) (a new reference or NULL) */
        node = open_pop(&ot, opened, cid_c[i], cid);
        if (node != NULL) {
            if (!PyList_CheckExact(node) || PyList_GET_SIZE(node) != O_LEN) {
                PyErr_SetString(PyExc_TypeError, "an open call's state must be a list");
                goto done;
            }
        } else if (PyErr_Occurred()) {
            goto done;
        }

        if (node == NULL) {
            w[0] = (uint64_t)fid_c[i];
            slot = pm_find(&pm, PM_LEAF, 1, w);
            if (slot->kind) {
                digest = slot->value;
                paths = slot->value2;
                Py_INCREF(digest);
                Py_INCREF(paths);
            } else {
                if (!(digest = memo_or(leaves, fid, namer, "leaf", fid, NULL, NULL)) ||
                        !(paths = memo_or(leaf_sets, fid, namer, "leaf_paths", fid, NULL, NULL)))
                    goto done;
                pm_put(&pm, slot, PM_LEAF, 1, w, 0, digest, paths);
            }
        } else {
            if (res_c[i] != INCOMPLETE_C) {
                PyObject *child_ns = PyList_GET_ITEM(node, O_CHILD_NS);
                int lt = cmp_ll(d, d_c[i], child_ns, Py_GE);  /* child_ns < d */
                if (lt < 0)
                    goto done;
                if (minus_add(&mt, cp, i, lt ? child_ns : d, lt ? LLONG_MIN : d_c[i]) < 0)
                    goto done;
            }
            PyObject *kids = PyList_GET_ITEM(node, O_KIDS), *fold = PyList_GET_ITEM(node, O_FOLD);
            if (!PyList_CheckExact(kids)) {
                PyErr_SetString(PyExc_TypeError, "an open call's kids must be a list");
                goto done;
            }
            Py_ssize_t nk = PyList_GET_SIZE(kids);
            slot = NULL;
            if (nk <= PM_WORDS - 2) {
                w[0] = (uint64_t)fid_c[i];
                w[1] = PM_OBJ(fold);
                for (Py_ssize_t k = 0; k < nk; k++)
                    w[2 + k] = PM_OBJ(PyList_GET_ITEM(kids, k));
                slot = pm_find(&pm, PM_INNER, (int)(2 + nk), w);
            }
            if (slot != NULL && slot->kind) {
                digest = slot->value;
                Py_INCREF(digest);
            } else {
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
                /* the key's objects are read again: the namer's code may have run */
                if (slot != NULL && PyList_GET_SIZE(kids) == nk &&
                        PyList_GET_ITEM(node, O_FOLD) == fold) {
                    int same = 1;
                    for (Py_ssize_t k = 0; k < nk && same; k++)
                        same = w[2 + k] == PM_OBJ(PyList_GET_ITEM(kids, k));
                    if (same)
                        pm_put(&pm, pm_find(&pm, PM_INNER, (int)(2 + nk), w), PM_INNER,
                               (int)(2 + nk), w, ~0u << 1 & ((1u << (2 + nk)) - 1), digest,
                               NULL);
                }
            }
            PyObject *below = PyList_GET_ITEM(node, O_PATHS);
            paths = pm_pair(&pm, PM_PREFIX, (uint64_t)fid_c[i], PM_OBJ(below), 2u, prefixes,
                            namer, "prefixed", fid, below);
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
        if (node != NULL) {
            recycle_state(node);
            node = NULL;
        }

        if (cid_c[i] == ses_c) {
            Py_XSETREF(root_paths, paths);
            Py_XSETREF(root_digest, digest);
            paths = digest = NULL;
        } else {
            if (par_c[i] != 0 && par_c[i] != cid_c[i]) {
                PyObject *p = open_get(&ot, opened, par_c[i], par);
                if (p == NULL) {
                    if (PyErr_Occurred())
                        goto done;
                    PyObject *kids = pooled_list(), *kid_t0 = pooled_list();
                    PyObject *state = pooled_state();
                    if (!kids || !kid_t0 || !state || PyList_Append(kids, digest) < 0 ||
                            PyList_Append(kid_t0, t0) < 0) {
                        Py_XDECREF(kids); Py_XDECREF(kid_t0); Py_XDECREF(state);
                        goto done;
                    }
                    Py_CLEAR(digest);
                    PyObject *err = is_error ? Py_True : Py_False;
                    state_set(state, O_FID, Py_NewRef(pfid));
                    state_set(state, O_T0, Py_NewRef(t0));
                    state_set(state, O_CHILD_NS, Py_NewRef(d));
                    state_set(state, O_ERR_CHILD, Py_NewRef(err));
                    state_set(state, O_FOLD, Py_NewRef(EMPTY_FOLD));
                    state_set(state, O_KIDS, kids);
                    state_set(state, O_KID_T0, kid_t0);
                    state_set(state, O_PATHS, paths); paths = NULL;
                    if (up != NULL) {
                        state_set(state, O_WAITERS, up);
                        up = NULL;
                    }
                    open_put(&ot, par_c[i], par, state);
                    continue;
                }
                Py_INCREF(p);
                node = p;  /* held in `node` so that `goto done` releases it */
                if (!PyList_CheckExact(p) || PyList_GET_SIZE(p) != O_LEN) {
                    PyErr_SetString(PyExc_TypeError, "an open call's state must be a list");
                    goto done;
                }
                int lt = cmp_ll(t0, t0_c[i], PyList_GET_ITEM(p, O_T0), Py_LT);
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
                    int ge = cmp_ll(
                        t0, t0_c[i], PyList_GET_ITEM(kid_t0, PyList_GET_SIZE(kid_t0) - 1), Py_GE);
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
                    PyObject *u = pm_pair(&pm, PM_UNION, PM_OBJ(below), PM_OBJ(paths), 3u,
                                          unions, namer, "union", below, paths);
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
    if (minus_to_dict(&mt, cols, cp, minus) < 0)
        goto done;
    result = minus;
    minus = NULL;
done:
    if (ot.n > 0) {
        /* the calls still open join the tree's dict, on an error too (its exception kept) */
        PyObject *et, *ev, *tb;
        PyErr_Fetch(&et, &ev, &tb);
        if (open_flush(&ot, opened) < 0) {
            Py_CLEAR(result);
            Py_XDECREF(et); Py_XDECREF(ev); Py_XDECREF(tb);
        } else {
            PyErr_Restore(et, ev, tb);
        }
    }
    open_free(&ot);
    minus_free(&mt);
    pm_clear(&pm);
    PyMem_Free(pm.e);
    PyMem_Free(cv);
    Py_XDECREF(node); Py_XDECREF(digest); Py_XDECREF(paths); Py_XDECREF(up);
    Py_XDECREF(root_paths); Py_XDECREF(root_digest);
    Py_XDECREF(ses); Py_XDECREF(namer); Py_XDECREF(opened); Py_XDECREF(leaves);
    Py_XDECREF(leaf_sets); Py_XDECREF(inners); Py_XDECREF(prefixes); Py_XDECREF(unions);
    Py_XDECREF(minus);
    return result;
}

/* ---- decoding a batch's call block (wire._columns) -------------------------------------- */


/* A list of n values; equal neighbours share one int object (a session, thread or
 * function id repeats down its column), so most values cost no allocation. */
static PyObject *
int_list(const int64_t *v, Py_ssize_t n)
{
    PyObject *out = PyList_New(n);
    if (out == NULL)
        return NULL;
    PyObject *prev = NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *o;
        if (prev != NULL && v[i] == v[i - 1]) {
            o = prev;
            Py_INCREF(o);
        } else if ((o = PyLong_FromLongLong(v[i])) == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, o);
        prev = o;
    }
    return out;
}

/* v[i] = the little-endian int64 whose byte b is src[b * total + i] (the wire's byte planes:
 * byte b of every value, then byte b + 1). With SSE2 (every x86-64, little-endian), 16
 * values at a time: bytes, then pairs, then quads of the eight planes interleaved. */
static void
transpose_planes(const unsigned char *src, Py_ssize_t total, int64_t *v)
{
    Py_ssize_t i = 0;
#if defined(__SSE2__)
    for (; i + 16 <= total; i += 16) {
        __m128i a[8], t[8], u[8];
        for (int b = 0; b < 8; b++)
            a[b] = _mm_loadu_si128((const __m128i *)(src + b * total + i));
        for (int b = 0; b < 8; b += 2) {  /* t[b]: values 0-7, t[b + 1]: 8-15; planes b, b+1 */
            t[b] = _mm_unpacklo_epi8(a[b], a[b + 1]);
            t[b + 1] = _mm_unpackhi_epi8(a[b], a[b + 1]);
        }
        for (int h = 0; h < 2; h++) {  /* u[4h + ...]: planes 0-3 and 4-7 of values 8h.. */
            u[4 * h] = _mm_unpacklo_epi16(t[h], t[2 + h]);
            u[4 * h + 1] = _mm_unpackhi_epi16(t[h], t[2 + h]);
            u[4 * h + 2] = _mm_unpacklo_epi16(t[4 + h], t[6 + h]);
            u[4 * h + 3] = _mm_unpackhi_epi16(t[4 + h], t[6 + h]);
        }
        __m128i *out = (__m128i *)(v + i);
        for (int q = 0; q < 4; q++) {  /* values 4q .. 4q + 3 */
            __m128i lo = u[(q / 2) * 4 + (q % 2)], hi = u[(q / 2) * 4 + 2 + (q % 2)];
            _mm_storeu_si128(out + 2 * q, _mm_unpacklo_epi32(lo, hi));
            _mm_storeu_si128(out + 2 * q + 1, _mm_unpackhi_epi32(lo, hi));
        }
    }
#endif
    for (; i < total; i++) {
        uint64_t x = 0;
        for (int b = 0; b < 8; b++)
            x |= (uint64_t)src[b * total + i] << (8 * b);
        v[i] = (int64_t)x;
    }
}

/* column(raw, n, field) -> the list of a raw block's column (see decode_columns). */
static PyObject *
column(PyObject *self, PyObject *args)
{
    PyObject *raw;
    Py_ssize_t n;
    int field;
    if (!PyArg_ParseTuple(args, "Oni", &raw, &n, &field))
        return NULL;
    const int64_t *block = raw_block(raw, n);
    if (block == NULL || field < 0 || field >= RAW_FIELDS) {
        PyErr_SetString(PyExc_ValueError, "not a column of a raw block of n calls");
        return NULL;
    }
    return int_list(block + field * n, n);
}

/* decode_columns(n, data[, ends]) -> (cols, dur, bounds, raw) or None: wire._columns without a
 * Python object per byte plane or per intermediate column; bounds is (shortest duration,
 * latest end) of the calls (None for no calls), which the fold needs of every batch; raw is
 * the decoded block itself, RAW_FIELDS int64 columns of n values in native order (the
 * fields of CALL_FIELDS with durations in place of the end times, then the end times), so
 * that fold_tree and count_sigs read the values without converting the lists' ints back.
 * ends false: no list of the end times (None in its place), made by column() if needed.
 * None when a running sum leaves int64 (only a malformed block does that): the caller
 * decodes it the Python way, with unbounded ints. */
static PyObject *
decode_columns(PyObject *self, PyObject *args)
{
    Py_ssize_t n;
    Py_buffer buf;
    int ends = 1;
    if (!PyArg_ParseTuple(args, "ny*|p", &n, &buf, &ends))
        return NULL;
    PyObject *result = NULL, *cols = NULL, *dur = NULL, *raw = NULL;
    if (n < 0 || buf.len != n * N_FIELDS * 8) {
        PyErr_SetString(PyExc_ValueError, "call block does not hold the announced calls");
        goto done;
    }
    Py_ssize_t total = n * N_FIELDS;
    if ((raw = PyBytes_FromStringAndSize(NULL, n * RAW_FIELDS * 8)) == NULL)
        goto done;
    int64_t *v = (int64_t *)PyBytes_AS_STRING(raw);
    if ((uintptr_t)v % _Alignof(int64_t)) {  /* never with CPython's allocator */
        PyErr_SetString(PyExc_SystemError, "unaligned bytes object");
        goto done;
    }
    int64_t *t1 = v + total;  /* end times, beside the block */
    transpose_planes(buf.buf, total, v);
    int64_t *cid = v + F_CID * n, *t0 = v + F_T0 * n, *d = v + F_T1 * n;
    for (Py_ssize_t i = 1; i < n; i++)
        if (__builtin_add_overflow(cid[i - 1], cid[i], &cid[i]) ||
                __builtin_add_overflow(t0[i - 1], t0[i], &t0[i]))
            goto fallback;
    for (Py_ssize_t i = 0; i < n; i++)
        if (__builtin_add_overflow(t0[i], d[i], &t1[i]))
            goto fallback;
    if ((cols = PyList_New(N_FIELDS)) == NULL)
        goto done;
    for (int f = 0; f < N_FIELDS; f++) {
        int lazy = !ends && (f == F_T1 || f == F_PAR || f == F_IN || f == F_OUT || f == F_CPU);
        PyObject *col = lazy ? Py_NewRef(Py_None) : int_list(f == F_T1 ? t1 : v + f * n, n);
        if (col == NULL)
            goto done;
        PyList_SET_ITEM(cols, f, col);
    }
    if ((dur = int_list(d, n)) == NULL)
        goto done;
    if (n == 0) {
        result = PyTuple_Pack(4, cols, dur, Py_None, raw);
        goto done;
    }
    int64_t lo = d[0], hi = t1[0];
    for (Py_ssize_t i = 1; i < n; i++) {
        if (d[i] < lo)
            lo = d[i];
        if (t1[i] > hi)
            hi = t1[i];
    }
    result = Py_BuildValue("(OO(LL)O)", cols, dur, (long long)lo, (long long)hi, raw);
    goto done;
fallback:
    result = Py_None;
    Py_INCREF(result);
done:
    Py_XDECREF(raw);
    Py_XDECREF(cols);
    Py_XDECREF(dur);
    PyBuffer_Release(&buf);
    return result;
}

/* ---- the signature statistics of a batch (SessionTree.feed's Counter loop) --------------- */

enum { S_FID, S_PFID, S_IN, S_OUT, S_RES, S_EXC, S_DUR, S_CPU, S_COLS };
enum { A_CALLS, A_TOTAL, A_SELF, A_MIN, A_MAX, A_CPU, A_HIST, A_LEN };

static Py_ssize_t EXACT = 64, SUB = 8, SHIFT = 3;
static PyObject *TO_BUCKETS = NULL;

static int64_t
bucket_of(int64_t ns)
{
    if (ns < SUB)
        return ns > 0 ? ns : 0;
    int e = 63 - __builtin_clzll((unsigned long long)ns);
    return (e - SHIFT + 1) * SUB + ((ns >> (e - SHIFT)) & (SUB - 1));
}

static uint64_t
mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    return h * 0xff51afd7ed558ccdULL;
}

typedef struct {
    Py_ssize_t first;   /* the call that first had this signature in the batch */
    PyObject *acc;      /* sigs[key] (borrowed: sigs holds it) */
    int64_t calls, total, lo, hi, cpu;
} Sig;

typedef struct {
    Py_ssize_t sig;     /* index into the Sig array, -1: empty */
    int64_t d, count;
    Py_ssize_t next;    /* pairs in first-seen order */
} Pair;

/* h[key] = h.get(key, 0) + count */
static int
hist_add(PyObject *h, int64_t key, int64_t count)
{
    PyObject *k = PyLong_FromLongLong(key), *c = PyLong_FromLongLong(count);
    int r = (k && c) ? add_to(h, k, c) : -1;
    Py_XDECREF(k);
    Py_XDECREF(c);
    return r;
}

/* count_sigs(sigs, fids, pfids, ins, outs, ress, excs, durs, cpus, incomplete[, raw]) -> bool:
 * the statistics part of SessionTree.feed, which documents it: per signature, calls, total
 * (and self, before the callees' time is taken off), min, max, CPU and the duration
 * histogram, updated once per distinct (signature, duration) in the order they first
 * occur, as Counter's loop does. False (and nothing changed) when a value is not an int64
 * or a sum could leave int64: the caller counts them the Python way. */
static PyObject *
count_sigs(PyObject *self, PyObject *args)
{
    PyObject *sigs, *cols[S_COLS], *incomplete_obj, *raw = NULL;
    if (!PyArg_ParseTuple(args, "O!O!O!OOO!O!O!OO|O", &PyDict_Type, &sigs,
                          &PyList_Type, &cols[0], &PyList_Type, &cols[1], &cols[2],
                          &cols[3], &PyList_Type, &cols[4], &PyList_Type, &cols[5],
                          &PyList_Type, &cols[6], &cols[7], &incomplete_obj, &raw))
        return NULL;
    /* the ins, outs and CPU times may be left in the raw block (None): read there */
    int left_out = 0;
    for (int k = 2; k < S_COLS; k += (k == 3 ? 4 : 1)) {
        if (cols[k] == Py_None)
            left_out = 1;
        else if (!PyList_Check(cols[k])) {
            PyErr_SetString(PyExc_TypeError, "a column must be a list or None");
            return NULL;
        }
    }
    if (TO_BUCKETS == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_fold.configure_sigs() was not called");
        return NULL;
    }
    long long incomplete = PyLong_AsLongLong(incomplete_obj);
    if (incomplete == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(cols[0]);
    for (int k = 1; k < S_COLS; k++)
        if (cols[k] != Py_None && PyList_GET_SIZE(cols[k]) != n) {
            PyErr_SetString(PyExc_ValueError, "columns of different lengths");
            return NULL;
        }
    PyObject *result = NULL;
    int64_t *v = NULL;
    Sig *sig = NULL;
    Py_ssize_t *sig_slot = NULL;
    Pair *pair = NULL;
    Py_ssize_t cap = 16;
    while (cap < 2 * n)
        cap <<= 1;
    const int64_t *block = raw_block(raw, n);
    if (block == NULL && left_out)
        Py_RETURN_FALSE;  /* the Python count, with every list */
    if ((block == NULL && !(v = PyMem_Malloc(sizeof(int64_t) * S_COLS * (size_t)(n ? n : 1)))) ||
            !(sig = PyMem_Malloc(sizeof(Sig) * (size_t)(n ? n : 1))) ||
            !(sig_slot = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)cap)) ||
            !(pair = PyMem_Malloc(sizeof(Pair) * (size_t)cap))) {
        PyErr_NoMemory();
        goto done;
    }
    /* Every value as an int64, checked before anything changes: read in the raw block the
     * columns were decoded from (see fold_tree), else converted. */
    static const int RAW_OF[S_COLS] = {F_FID, F_PFID, F_IN, F_OUT, F_RES, F_EXC, F_T1, F_CPU};
    const int64_t *col[S_COLS];
    int64_t dmax = 0, cmax = 0;
    for (int k = 0; k < S_COLS; k++) {
        if (block != NULL) {
            col[k] = block + RAW_OF[k] * n;
        } else {
            for (Py_ssize_t i = 0; i < n; i++) {
                PyObject *o = PyList_GET_ITEM(cols[k], i);
                int overflow = 0;
                long long x = PyLong_CheckExact(o) ? PyLong_AsLongLongAndOverflow(o, &overflow)
                                                   : 0;
                if (!PyLong_CheckExact(o) || overflow) {
                    result = Py_False;
                    goto done;
                }
                if (x == -1 && PyErr_Occurred())
                    goto done;
                v[k * n + i] = x;
            }
            col[k] = v + k * n;
        }
        if (k == S_DUR || k == S_CPU) {
            int64_t *most = k == S_DUR ? &dmax : &cmax;
            for (Py_ssize_t i = 0; i < n; i++) {
                int64_t x = col[k][i];
                if (x > *most || -x > *most)
                    *most = x > 0 ? x : -x;
            }
        }
    }
    if ((n && (dmax > INT64_MAX / 4 / n || cmax > INT64_MAX / 4 / n)) ||
            dmax == INT64_MIN || cmax == INT64_MIN) {
        result = Py_False;
        goto done;
    }
    for (Py_ssize_t s = 0; s < cap; s++) {
        sig_slot[s] = -1;
        pair[s].sig = -1;
    }
    Py_ssize_t n_sigs = 0, first_pair = -1, last_pair = -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (col[S_RES][i] == incomplete)
            continue;  /* placeholders: in the tree, not in the statistics */
        uint64_t h = 0;
        for (int k = 0; k < S_DUR; k++)
            h = mix(h, (uint64_t)col[k][i]);
        Py_ssize_t s = (Py_ssize_t)(h & (uint64_t)(cap - 1)), j;
        for (;; s = (s + 1) & (cap - 1)) {
            j = sig_slot[s];
            if (j < 0)
                break;
            Py_ssize_t f = sig[j].first;
            int same = 1;
            for (int k = 0; k < S_DUR && same; k++)
                same = col[k][f] == col[k][i];
            if (same)
                break;
        }
        int64_t d = col[S_DUR][i];
        if (j < 0) {
            j = sig_slot[s] = n_sigs++;
            sig[j].first = i;
            sig[j].acc = NULL;
            sig[j].calls = sig[j].total = sig[j].cpu = 0;
            sig[j].lo = sig[j].hi = d;
        }
        Sig *g = &sig[j];
        g->calls++;
        g->total += d;
        g->cpu += col[S_CPU][i];
        if (d < g->lo)
            g->lo = d;
        if (d > g->hi)
            g->hi = d;
        uint64_t ph = mix((uint64_t)j, (uint64_t)d);
        Py_ssize_t p = (Py_ssize_t)(ph & (uint64_t)(cap - 1));
        while (pair[p].sig >= 0 && !(pair[p].sig == j && pair[p].d == d))
            p = (p + 1) & (cap - 1);
        if (pair[p].sig < 0) {
            pair[p].sig = j;
            pair[p].d = d;
            pair[p].count = 0;
            pair[p].next = -1;
            if (last_pair >= 0)
                pair[last_pair].next = p;
            else
                first_pair = p;
            last_pair = p;
        }
        pair[p].count++;
    }
    /* Each signature's accumulator, made in the order signatures first occur. */
    for (Py_ssize_t j = 0; j < n_sigs; j++) {
        Py_ssize_t f = sig[j].first;
        PyObject *key = PyTuple_New(S_DUR);
        if (key == NULL)
            goto done;
        for (int k = 0; k < S_DUR; k++) {
            PyObject *o = col_obj(cols[k], (const long long *)col[k], f);
            if (o == NULL) {
                Py_DECREF(key);
                goto done;
            }
            PyTuple_SET_ITEM(key, k, o);
        }
        PyObject *acc = PyDict_GetItemWithError(sigs, key);
        if (acc == NULL) {
            if (PyErr_Occurred()) {
                Py_DECREF(key);
                goto done;
            }
            /* [0, 0, 0, d, d, 0, {}] with d the first duration, as feed makes it */
            PyObject *d = PyList_GET_ITEM(cols[S_DUR], f);
            PyObject *hist = PyDict_New();
            acc = PyList_New(A_LEN);
            if (hist == NULL || acc == NULL) {
                Py_XDECREF(hist);
                Py_XDECREF(acc);
                Py_DECREF(key);
                goto done;
            }
            PyObject *zero = PyLong_FromLong(0);
            for (int k = A_CALLS; k <= A_CPU; k++) {
                PyObject *x = (k == A_MIN || k == A_MAX) ? d : zero;
                Py_INCREF(x);
                PyList_SET_ITEM(acc, k, x);
            }
            Py_DECREF(zero);
            PyList_SET_ITEM(acc, A_HIST, hist);
            int r = PyDict_SetItem(sigs, key, acc);
            Py_DECREF(acc);
            if (r < 0) {
                Py_DECREF(key);
                goto done;
            }
        }
        Py_DECREF(key);
        if (!PyList_CheckExact(acc) || PyList_GET_SIZE(acc) != A_LEN ||
                !PyDict_CheckExact(PyList_GET_ITEM(acc, A_HIST))) {
            PyErr_SetString(PyExc_TypeError, "a signature's statistics must be a list");
            goto done;
        }
        sig[j].acc = acc;
    }
    /* Sums, minimum, maximum: once per signature. */
    for (Py_ssize_t j = 0; j < n_sigs; j++) {
        Sig *g = &sig[j];
        PyObject *acc = g->acc;
        int64_t adds[A_LEN] = {g->calls, g->total, g->total, 0, 0, g->cpu, 0};
        for (int k = A_CALLS; k <= A_CPU; k++) {
            if (k == A_MIN || k == A_MAX || (k == A_CPU && !adds[k]))
                continue;
            PyObject *x = PyLong_FromLongLong(adds[k]);
            PyObject *sum = x ? PyNumber_Add(PyList_GET_ITEM(acc, k), x) : NULL;
            Py_XDECREF(x);
            if (sum == NULL)
                goto done;
            PyList_SetItem(acc, k, sum);
        }
        for (int k = A_MIN; k <= A_MAX; k++) {
            PyObject *x = PyLong_FromLongLong(k == A_MIN ? g->lo : g->hi);
            if (x == NULL)
                goto done;
            int better = PyObject_RichCompareBool(x, PyList_GET_ITEM(acc, k),
                                                  k == A_MIN ? Py_LT : Py_GT);
            if (better < 0) {
                Py_DECREF(x);
                goto done;
            }
            if (better)
                PyList_SetItem(acc, k, x);
            else
                Py_DECREF(x);
        }
    }
    /* Histograms: once per distinct (signature, duration), in first-seen order
     * (histogram.add inlined, as feed does). */
    for (Py_ssize_t p = first_pair; p >= 0; p = pair[p].next) {
        PyObject *h = PyList_GET_ITEM(sig[pair[p].sig].acc, A_HIST);
        int64_t d = pair[p].d, count = pair[p].count;
        PyObject *b = PyLong_FromLongLong(~d);
        if (b == NULL)
            goto done;
        PyObject *old = PyDict_GetItemWithError(h, b);
        if (old == NULL && PyErr_Occurred()) {
            Py_DECREF(b);
            goto done;
        }
        int exact = 1;
        if (old == NULL && PyDict_GET_SIZE(h)) {
            Py_ssize_t pos = 0;
            PyObject *k0, *c0;
            PyDict_Next(h, &pos, &k0, &c0);
            int over = 0;
            long long k = PyLong_AsLongLongAndOverflow(k0, &over);
            if (k == -1 && PyErr_Occurred()) {
                Py_DECREF(b);
                goto done;
            }
            exact = over < 0 || (!over && k < 0);
        }
        int r;
        if (old != NULL || (PyDict_GET_SIZE(h) < EXACT && exact)) {
            r = hist_add(h, ~d, count);
        } else {
            if (exact) {
                PyObject *done_ = PyObject_CallFunctionObjArgs(TO_BUCKETS, h, NULL);
                if (done_ == NULL) {
                    Py_DECREF(b);
                    goto done;
                }
                Py_DECREF(done_);
            }
            r = hist_add(h, bucket_of(d), count);
        }
        Py_DECREF(b);
        if (r < 0)
            goto done;
    }
    result = Py_True;
done:
    Py_XINCREF(result);
    PyMem_Free(v);
    PyMem_Free(sig);
    PyMem_Free(sig_slot);
    PyMem_Free(pair);
    return result;
}

static PyObject *
configure_sigs(PyObject *self, PyObject *args)
{
    PyObject *to_buckets;
    Py_ssize_t exact, sub, shift;
    if (!PyArg_ParseTuple(args, "nnnO", &exact, &sub, &shift, &to_buckets))
        return NULL;
    EXACT = exact;
    SUB = sub;
    SHIFT = shift;
    Py_INCREF(to_buckets);
    Py_XSETREF(TO_BUCKETS, to_buckets);
    Py_RETURN_NONE;
}

/* entries_ok(entries, layouts) -> bool: the batch entries' shape check of
   wire._check_entries for one key in one pass, without transposing the entries: every
   entry a list (exactly) whose length is a key of ``layouts`` (length -> tuple of one
   frozenset of allowed types per field) and each field's type in its set. False leaves it
   to the Python check to name what is wrong. */
static PyObject *
entries_ok(PyObject *self, PyObject *args)
{
    PyObject *entries, *layouts, *layout = NULL;
    Py_ssize_t last = -1;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!O!", &PyList_Type, &entries, &PyDict_Type, &layouts))
        return NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(entries); i++) {
        PyObject *e = PyList_GET_ITEM(entries, i);
        if (!PyList_CheckExact(e))
            Py_RETURN_FALSE;
        Py_ssize_t len = PyList_GET_SIZE(e);
        if (len != last) {
            PyObject *key = PyLong_FromSsize_t(len);
            if (key == NULL)
                return NULL;
            layout = PyDict_GetItemWithError(layouts, key); /* borrowed */
            Py_DECREF(key);
            if (layout == NULL) {
                if (PyErr_Occurred())
                    return NULL;
                Py_RETURN_FALSE;
            }
            if (!PyTuple_Check(layout) || PyTuple_GET_SIZE(layout) != len) {
                PyErr_SetString(PyExc_TypeError, "entries_ok: a layout per entry length");
                return NULL;
            }
            last = len;
        }
        for (Py_ssize_t j = 0; j < len; j++) {
            int ok = PySet_Contains(PyTuple_GET_ITEM(layout, j),
                                    (PyObject *)Py_TYPE(PyList_GET_ITEM(e, j)));
            if (ok < 0)
                return NULL;
            if (!ok)
                Py_RETURN_FALSE;
        }
    }
    Py_RETURN_TRUE;
}

static PyMethodDef methods[] = {
    {"entries_ok", entries_ok, METH_VARARGS,
     "entries_ok(entries, layouts) -> bool: wire._check_entries' shape check of one key in C."},
    {"configure_sigs", configure_sigs, METH_VARARGS,
     "configure_sigs(EXACT, SUB, SHIFT, to_buckets): the histogram's constants."},
    {"decode_columns", decode_columns, METH_VARARGS,
     "decode_columns(n, data[, ends]) -> (cols, dur, bounds, raw) or None: wire._columns in C."},
    {"column", column, METH_VARARGS,
     "column(raw, n, field) -> list: a column of decode_columns' raw block."},
    {"count_sigs", count_sigs, METH_VARARGS,
     "count_sigs(sigs, fids, pfids, ins, outs, ress, excs, durs, cpus, INCOMPLETE[, raw]) -> "
     "bool: SessionTree.feed's signature statistics in C."},
    {"configure", configure, METH_VARARGS,
     "configure(ERROR, INCOMPLETE, empty_fold, MAX_KIDS, add_kid): sessiontree's constants."},
    {"fold_tree", fold_tree, METH_VARARGS,
     "fold_tree(tree, cids, pars, fids, pfids, ins, outs, ress, excs, t0s, durs[, raw]) -> "
     "minus: "
     "SessionTree._fold_tree_py in C."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fold", NULL, -1, methods};

PyMODINIT_FUNC
PyInit__fold(void)
{
    return PyModule_Create(&module);
}
