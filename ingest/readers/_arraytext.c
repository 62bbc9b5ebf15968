/* Parse the array texts of XP tables -- "(1.5, -2e3, ...)" or "[1.5,-2e3,...]" -- straight into a numpy
 * buffer, one pass, without the GIL.
 *
 * Correlations are ~90 % of an XP record and pyarrow's CSV converter, the pure-Python path's engine, spends
 * ~80 ns per number on them (joining and line splitting included); this loop ~35, on this project's 2-core
 * machine (tests/unit/test_readers_numbers.py checks the values, bench/bench_ingest.py the speed).
 * Every value is correctly rounded, as strtod/strtof would give:
 *   - float64: Clinger's fast path (at most 19 significant digits with w <= 2^53 and |q| <= 22: one exact
 *     IEEE multiply or divide), otherwise strtod;
 *   - float32: the same in float when w <= 2^24 and |q| <= 10; otherwise the correctly rounded double is
 *     rounded to float unless it lies exactly on a float midpoint -- the only case where rounding twice can
 *     differ from rounding once -- and then strtof decides.
 * Anything unusual (nan/inf/null words, a wrong count, a stray character) gives the row a status and is left
 * to the Python code, which knows how to name what is wrong.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { ROW_OK = 0, ROW_MISSING = 1, ROW_BAD = 2 };

static const double P10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                             1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
static const float P10F[] = {1e0f, 1e1f, 1e2f, 1e3f, 1e4f, 1e5f, 1e6f, 1e7f, 1e8f, 1e9f, 1e10f};

static inline int is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* strtod/strtof on a copy of [s, e): the rare tokens the fast paths do not cover. */
static int slow_parse(const char *s, const char *e, int as_double, void *dst) {
    char buf[72];
    size_t n = (size_t)(e - s);
    if (n == 0 || n >= sizeof buf) return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    char *end;
    if (as_double) {
        double v = strtod(buf, &end);
        if (end != buf + n) return -1;
        *(double *)dst = v;
    } else {
        float v = strtof(buf, &end);
        if (end != buf + n) return -1;
        *(float *)dst = v;
    }
    return 0;
}

/* One decimal number starting at *pp (no leading space); advances *pp past it. 0 ok, -1 not a number. */
static int parse_number(const char **pp, const char *end, int as_double, void *dst) {
    const char *s = *pp, *p = s;
    int neg = 0;
    if (p < end && (*p == '-' || *p == '+')) neg = (*p++ == '-');
    uint64_t w = 0;
    int sig = 0, digits = 0, q = 0, overflow = 0;
    while (p < end && (unsigned)(*p - '0') < 10) {
        int d = *p++ - '0';
        digits++;
        if (sig < 19) { if (w || d) { w = w * 10 + d; sig += (w != 0); } }
        else { q++; overflow |= d != 0; }
    }
    if (p < end && *p == '.') {
        p++;
        while (p < end && (unsigned)(*p - '0') < 10) {
            int d = *p++ - '0';
            digits++;
            if (sig < 19) { if (w || d) { w = w * 10 + d; sig++; } q--; }
            else overflow |= d != 0;
        }
    }
    if (digits == 0) return -1;
    if (p < end && (*p == 'e' || *p == 'E')) {
        const char *x = p + 1;
        int eneg = 0, ex = 0, edigits = 0;
        if (x < end && (*x == '-' || *x == '+')) eneg = (*x++ == '-');
        while (x < end && (unsigned)(*x - '0') < 10) {
            if (ex < 100000) ex = ex * 10 + (*x - '0');
            x++;
            edigits++;
        }
        if (edigits == 0) return -1;
        q += eneg ? -ex : ex;
        p = x;
    }
    *pp = p;
    if (overflow) return slow_parse(s, p, as_double, dst);
    if (as_double) {
        if (w <= (1ULL << 53) && q >= -22 && q <= 22) {
            double v = (double)w;
            v = q < 0 ? v / P10[-q] : v * P10[q];
            *(double *)dst = neg ? -v : v;
            return 0;
        }
        return slow_parse(s, p, 1, dst);
    }
#if FLT_EVAL_METHOD == 0
    if (w <= (1ULL << 24) && q >= -10 && q <= 10) {
        float v = (float)w;
        v = q < 0 ? v / P10F[-q] : v * P10F[q];
        *(float *)dst = neg ? -v : v;
        return 0;
    }
#endif
    if (w == 0) { *(float *)dst = neg ? -0.0f : 0.0f; return 0; }
    if (w <= (1ULL << 53) && q >= -22 && q <= 22) {
        double v = (double)w;
        v = q < 0 ? v / P10[-q] : v * P10[q];
        uint64_t bits;
        memcpy(&bits, &v, sizeof bits);
        if (v >= FLT_MIN && v <= FLT_MAX && (bits & 0x1FFFFFFFULL) != 0x10000000ULL) {
            *(float *)dst = (float)(neg ? -v : v);
            return 0;
        }
    }
    return slow_parse(s, p, 0, dst);
}

/* One row's text [s, e): ROW_OK with `length` values written, ROW_MISSING, or ROW_BAD. */
static int parse_row(const char *s, const char *e, Py_ssize_t length, int as_double, char *dst) {
    while (s < e && is_space(*s)) s++;
    while (e > s && is_space(e[-1])) e--;
    if (s == e) return ROW_MISSING;
    if (*s == '(' || *s == '[') {
        char close = *s == '(' ? ')' : ']';
        if (e[-1] != close) return ROW_BAD;
        s++;
        e--;
        while (s < e && is_space(*s)) s++;
        if (s == e) return ROW_MISSING;               /* "()" or "[ ]": a zero-length array */
    }
    size_t width = as_double ? sizeof(double) : sizeof(float);
    for (Py_ssize_t k = 0; k < length; k++) {
        while (s < e && is_space(*s)) s++;
        if (parse_number(&s, e, as_double, dst + k * width) != 0) return ROW_BAD;
        while (s < e && is_space(*s)) s++;
        if (k + 1 < length) {
            if (s == e || *s != ',') return ROW_BAD;
            s++;
        }
    }
    return s == e ? ROW_OK : ROW_BAD;
}

PyDoc_STRVAR(parse_rows_doc,
"parse_rows(text, bounds, length, out, status) -> number of rows not ROW_OK\n\n"
"text: bytes-like, the rows' texts back to back; bounds: int64 buffer of nrows+1 offsets into text;\n"
"out: C-contiguous float32 or float64 buffer of nrows*length values (rows not OK are set to NaN);\n"
"status: int8 buffer of nrows, set to 0 (ok), 1 (missing: empty or zero-length) or 2 (anything else).");

static PyObject *parse_rows(PyObject *self, PyObject *args) {
    Py_buffer text, bounds, out, status;
    Py_ssize_t length;
    if (!PyArg_ParseTuple(args, "y*y*nw*w*", &text, &bounds, &length, &out, &status)) return NULL;
    PyObject *result = NULL;
    Py_ssize_t nrows = status.len;
    int as_double;
    if (out.itemsize == 8 || (out.format && strcmp(out.format, "d") == 0)) as_double = 1;
    else as_double = 0;
    if (out.format && strcmp(out.format, "d") != 0 && strcmp(out.format, "f") != 0) {
        PyErr_SetString(PyExc_TypeError, "out must be float32 or float64");
        goto done;
    }
    if (length < 1 || bounds.len != (nrows + 1) * (Py_ssize_t)sizeof(int64_t) ||
        out.len != nrows * length * (Py_ssize_t)(as_double ? 8 : 4)) {
        PyErr_SetString(PyExc_ValueError, "inconsistent buffer sizes");
        goto done;
    }
    const int64_t *b = (const int64_t *)bounds.buf;
    for (Py_ssize_t i = 0; i <= nrows; i++) {
        if (b[i] < 0 || b[i] > text.len || (i && b[i] < b[i - 1])) {
            PyErr_SetString(PyExc_ValueError, "bounds out of range");
            goto done;
        }
    }
    Py_ssize_t nbad = 0;
    size_t row_bytes = (size_t)length * (as_double ? 8 : 4);
    Py_BEGIN_ALLOW_THREADS
    const char *base = (const char *)text.buf;
    char *o = (char *)out.buf;
    int8_t *st = (int8_t *)status.buf;
    for (Py_ssize_t i = 0; i < nrows; i++) {
        char *dst = o + i * row_bytes;
        int r = parse_row(base + b[i], base + b[i + 1], length, as_double, dst);
        st[i] = (int8_t)r;
        if (r != ROW_OK) {
            nbad++;
            for (Py_ssize_t k = 0; k < length; k++) {
                if (as_double) ((double *)dst)[k] = NAN;
                else ((float *)dst)[k] = NAN;
            }
        }
    }
    Py_END_ALLOW_THREADS
    result = PyLong_FromSsize_t(nbad);
done:
    PyBuffer_Release(&text);
    PyBuffer_Release(&bounds);
    PyBuffer_Release(&out);
    PyBuffer_Release(&status);
    return result;
}

static PyMethodDef methods[] = {
    {"parse_rows", parse_rows, METH_VARARGS, parse_rows_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_arraytext",
                                    "Compiled parser of XP array texts (see numbers.py).", -1, methods};

PyMODINIT_FUNC PyInit__arraytext(void) { return PyModule_Create(&module); }
