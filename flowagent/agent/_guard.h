/* Shared by both C extensions (_speedups, _cores): whose is the pending exception?
 *
 * The agent never raises into the program, but the program can raise inside agent code: its
 * signal handler runs at the next bytecode boundary, which may be in the agent, and so can
 * another thread's PyThreadState_SetAsyncExc. Those exceptions are the program's and must
 * propagate exactly as without the agent. One rule decides, written once in Python
 * (guard.program_exception, also used by the pure twin); this is its C entry point. */
#ifndef FLOWAGENT_GUARD_H
#define FLOWAGENT_GUARD_H

#include <Python.h>

/* 1 if the pending exception is the program's (anything not an Exception, or what
   program_exception(exc) says), 0 if it is the agent's own. An exception must be set; it
   stays set either way. */
static int
fa_program_error(PyObject *program_exception)
{
    if (!PyErr_ExceptionMatches(PyExc_Exception))
        return 1;
    if (program_exception == NULL)
        return 0;
    PyObject *t, *v, *tb;
    PyErr_Fetch(&t, &v, &tb);
    PyErr_NormalizeException(&t, &v, &tb);
    if (v != NULL && tb != NULL)
        PyException_SetTraceback(v, tb);
    PyObject *r = v == NULL ? NULL : PyObject_CallOneArg(program_exception, v);
    int theirs = r != NULL && PyObject_IsTrue(r) == 1;
    Py_XDECREF(r);
    PyErr_Clear();
    PyErr_Restore(t, v, tb);
    return theirs;
}

#endif
