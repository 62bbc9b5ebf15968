/* Receive a whole `COPY ... TO STDOUT` into a caller's buffer, in C and without the GIL.
 *
 * psycopg2's copy_expert takes the GIL for every row it receives (a bytes object and a write() call): two
 * threads reading two halves of a training set then hand the GIL back and forth 100,000s of times and gain
 * nothing. Here the same libpq calls run in a plain loop with the GIL released, so parallel streams really
 * run in parallel (db/spectra.py). The libpq is the one psycopg2 itself loaded (found among the process's
 * loaded objects, never a second copy) and the PGconn is psycopg2's own, used while the caller holds the
 * connection: same session, same transaction, same temporary tables.
 *
 * Where that libpq cannot be found (not Linux/BSD, a statically linked psycopg2) `available()` is False
 * and db/spectra.py uses copy_expert in one stream.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <stdint.h>
#include <string.h>

#if defined(__linux__) || defined(__FreeBSD__)
#include <link.h>
#define HAVE_PHDR 1
#endif

typedef struct pg_conn PGconn;
typedef struct pg_result PGresult;
enum { PGRES_COMMAND_OK = 1, PGRES_COPY_OUT = 3 };

static PGresult *(*pq_exec)(PGconn *, const char *);
static int (*pq_result_status)(const PGresult *);
static char *(*pq_result_error)(const PGresult *);
static char *(*pq_error)(const PGconn *);
static void (*pq_clear)(PGresult *);
static int (*pq_get_copy_data)(PGconn *, char **, int);
static void (*pq_freemem)(void *);
static PGresult *(*pq_get_result)(PGconn *);
static int resolved = 0;   /* 1 once found; tried again otherwise (psycopg2 may be imported later) */

#ifdef HAVE_PHDR
static int find_libpq(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    const char *name = info->dlpi_name;
    const char *base = name ? strrchr(name, '/') : NULL;
    base = base ? base + 1 : name;
    if (base && strncmp(base, "libpq", 5) == 0 && (base[5] == '.' || base[5] == '-')) {
        *(const char **)data = name;
        return 1;
    }
    return 0;
}
#endif

static int resolve(void) {
    if (resolved == 1) return 1;
#ifdef HAVE_PHDR
    const char *path = NULL;
    dl_iterate_phdr(find_libpq, &path);
    if (!path) return 0;
    void *h = dlopen(path, RTLD_NOW | RTLD_NOLOAD);     /* the copy already loaded, never a new one */
    if (!h) return 0;
    pq_exec = (PGresult * (*)(PGconn *, const char *)) dlsym(h, "PQexec");
    pq_result_status = (int (*)(const PGresult *))dlsym(h, "PQresultStatus");
    pq_result_error = (char *(*)(const PGresult *))dlsym(h, "PQresultErrorMessage");
    pq_error = (char *(*)(const PGconn *))dlsym(h, "PQerrorMessage");
    pq_clear = (void (*)(PGresult *))dlsym(h, "PQclear");
    pq_get_copy_data = (int (*)(PGconn *, char **, int))dlsym(h, "PQgetCopyData");
    pq_freemem = (void (*)(void *))dlsym(h, "PQfreemem");
    pq_get_result = (PGresult * (*)(PGconn *)) dlsym(h, "PQgetResult");
    if (pq_exec && pq_result_status && pq_result_error && pq_error && pq_clear && pq_get_copy_data &&
        pq_freemem && pq_get_result)
        resolved = 1;
#endif
    return resolved;
}

static PyObject *available(PyObject *self, PyObject *args) {
    (void)self;
    (void)args;
    return PyBool_FromLong(resolve() == 1);
}

PyDoc_STRVAR(copy_out_doc,
"copy_out(pgconn_ptr, sql, out) -> bytes written, or -1 if `out` was too small\n\n"
"Runs `sql` (a COPY ... TO STDOUT) on psycopg2's PGconn (connection.pgconn_ptr) and writes its whole\n"
"output into the writable buffer `out`; the command is always read to its end, so the connection stays\n"
"usable. Raises RuntimeError with the server's message on failure.");

static PyObject *copy_out(PyObject *self, PyObject *args) {
    (void)self;
    unsigned long long ptr;
    const char *sql;
    Py_buffer out;
    if (!PyArg_ParseTuple(args, "Ksw*", &ptr, &sql, &out)) return NULL;
    if (resolve() != 1) {
        PyBuffer_Release(&out);
        PyErr_SetString(PyExc_RuntimeError, "libpq not found in this process");
        return NULL;
    }
    PGconn *conn = (PGconn *)(uintptr_t)ptr;
    char *dst = (char *)out.buf;
    Py_ssize_t cap = out.len, pos = 0;
    int overflow = 0, len = 0;
    char message[512] = {0};
    Py_BEGIN_ALLOW_THREADS
    PGresult *r = pq_exec(conn, sql);
    if (r == NULL || pq_result_status(r) != PGRES_COPY_OUT) {
        snprintf(message, sizeof message, "%s", r ? pq_result_error(r) : pq_error(conn));
        if (!message[0]) snprintf(message, sizeof message, "not a COPY TO STDOUT");
    }
    if (r) pq_clear(r);
    char *buf;
    /* always read the copy data to its end (-1) or to an error (-2), even after an overflow */
    while ((len = pq_get_copy_data(conn, &buf, 0)) > 0) {
        if (!overflow && pos + len <= cap) {
            memcpy(dst + pos, buf, (size_t)len);
            pos += len;
        } else {
            overflow = 1;
        }
        pq_freemem(buf);
    }
    if (len == -2 && !message[0]) snprintf(message, sizeof message, "%s", pq_error(conn));
    PGresult *fin;
    while ((fin = pq_get_result(conn)) != NULL) {
        int st = pq_result_status(fin);
        if (st != PGRES_COMMAND_OK && st != PGRES_COPY_OUT && !message[0])
            snprintf(message, sizeof message, "%s", pq_result_error(fin));
        pq_clear(fin);
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&out);
    if (message[0]) {
        PyErr_Format(PyExc_RuntimeError, "%s", message);
        return NULL;
    }
    return PyLong_FromSsize_t(overflow ? -1 : pos);
}

static PyMethodDef methods[] = {
    {"available", available, METH_NOARGS, "Whether psycopg2's libpq was found in this process."},
    {"copy_out", copy_out, METH_VARARGS, copy_out_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_pgcopy",
                                    "COPY TO STDOUT into a buffer, in C, without the GIL (see db/spectra.py).",
                                    -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__pgcopy(void) { return PyModule_Create(&module); }
