/* The recorder's C hot path as other extensions call it (no Python call in between).
 *
 * _speedups exports one FaHotPath as the capsule `_speedups._C_API`; a tracer core in
 * _cores.c that was handed _speedups' own open_call and close_call calls these instead:
 * the same functions, without an argument tuple and two vectorcalls per recorded call.
 * Semantics are exactly those of the Python-visible functions named in each comment.
 */
#ifndef FA_HOTPATH_H
#define FA_HOTPATH_H

#include <Python.h>

#define FA_HOTPATH_CAPSULE "flowagent.agent._speedups._C_API"
#define FA_HOTPATH_VERSION 6

/* Fills argv[0..nargs) with new references to a call's argument values: 0, or -1 with an
   exception set. `ctx` is the caller's, passed through. */
typedef int (*FaArgsFn)(void *ctx, PyObject **argv, Py_ssize_t nargs);
/* The most arguments open_lazy takes. */
#define FA_LAZY_MAX_ARGS 16

typedef struct {
    int version;
    /* open_call(fid, args): the new frame or None (new reference); NULL only with an
       exception set that belongs to the program (the agent's own are counted). */
    PyObject *(*open)(PyObject *fid, PyObject *const *args, Py_ssize_t nargs);
    /* close_call(frame, exc_type): 0, or -1 with an exception that belongs to the program. */
    int (*close)(PyObject *frame, PyObject *exc_type);
    /* Drop a reference to a frame the caller has closed (Py_DECREF: a frame nothing else
       holds goes back to _speedups' pool for the next call instead of being freed). */
    void (*release)(PyObject *frame);
    /* The Python-visible functions these stand for (borrowed: the module lives on). */
    PyObject *open_fn, *close_fn;
    /* open_call(fid, args) on `ts`, the calling thread's state (read once by the caller:
       PyThreadState_Get is a call and a read of libpython's thread-local on 3.12+), for a
       call whose `nargs` argument values cost something to read: `fetch` is called only when
       this call's input is shaped (the shape budget decides before any argument is looked
       at), so most calls never read them. */
    PyObject *(*open_lazy)(PyThreadState *ts, PyObject *fid, FaArgsFn fetch, void *ctx,
                           Py_ssize_t nargs);
    /* frame[RV] = value (when `value` is not NULL and the call is shaped: the only value
       read), close_call and release, in one call on `ts`: consumes the caller's reference
       to `frame`. 0, or -1 with an exception that belongs to the program (as close). */
    int (*finish)(PyThreadState *ts, PyObject *frame, PyObject *value, PyObject *exc_type);
} FaHotPath;

#endif
