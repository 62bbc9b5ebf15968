/* Whitened χ² and Gaussian NLL of XP bands: q = wᵀ C⁻¹ w with C = R (and C = R + diag(r)) for many 55×55
 * correlation matrices R given as float32 strict lower triangles (numpy tril_indices(55, -1) order), and for
 * training ½(wᵀC⁻¹w + log det C) with the gradient's C⁻¹w and diag(C⁻¹); in float64, without the GIL.
 *
 * Why C: LAPACK factorises one small matrix per call at a fraction of its large-matrix speed; here EIGHT
 * stars are factorised side by side (row-oriented Cholesky on packed lower triangles, the innermost loop over
 * the eight stars, which the compiler vectorises), read straight from the stored triangles, and the
 * triangular solve is fused in. Same arithmetic as potrf + trsv; results agree with them to rounding.
 * A row whose C is not positive definite, or with a non-finite input, gets NaN. See shared/covariance.py.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>

#define K 55
#define NCORR (K * (K - 1) / 2)
#define NPACK (K * (K + 1) / 2)
#define LANES 8

#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define VECTOR_CLONES
#endif

/* L: NPACK × LANES workspace (packed lower, row-major: element (i, j) at i(i+1)/2 + j), filled with the
 * Cholesky factor of C = R (+ diag r) for n ≤ LANES rows; bad[l] set where C is not positive definite. */
VECTOR_CLONES
static void factorise(const float *flat, const double *r, Py_ssize_t n, double *L, int *bad) {
    double s[LANES];
    for (int l = 0; l < LANES; l++) bad[l] = l >= n;
    for (int i = 0; i < K; i++) {           /* unpack C = R (+ diag r) */
        int bi = i * (i + 1) / 2, ti = i * (i - 1) / 2;
        for (int j = 0; j < i; j++)
            for (int l = 0; l < LANES; l++) L[(bi + j) * LANES + l] = l < n ? flat[l * NCORR + ti + j] : 0.0;
        for (int l = 0; l < LANES; l++) L[(bi + i) * LANES + l] = 1.0 + (r && l < n ? r[l * K + i] : 0.0);
    }
    for (int i = 0; i < K; i++) {           /* Cholesky–Banachiewicz, row by row */
        int bi = i * (i + 1) / 2;
        for (int j = 0; j <= i; j++) {
            int bj = j * (j + 1) / 2;
            for (int l = 0; l < LANES; l++) s[l] = L[(bi + j) * LANES + l];
            for (int k = 0; k < j; k++) {
                const double *a = L + (bi + k) * LANES, *b = L + (bj + k) * LANES;
                for (int l = 0; l < LANES; l++) s[l] -= a[l] * b[l];
            }
            if (i == j) {
                for (int l = 0; l < LANES; l++) {
                    bad[l] |= !(s[l] > 0.0);           /* also catches NaN */
                    L[(bi + i) * LANES + l] = s[l] > 0.0 ? sqrt(s[l]) : 1.0;
                }
            } else {
                const double *d = L + (bj + j) * LANES;
                for (int l = 0; l < LANES; l++) L[(bi + j) * LANES + l] = s[l] / d[l];
            }
        }
    }
}

/* y = L⁻¹ w for the group's rows; returns yᵀy per lane in acc. */
VECTOR_CLONES
static void forward_solve(const double *L, const double *w, Py_ssize_t n, double y[K][LANES], double *acc) {
    double s[LANES];
    for (int l = 0; l < LANES; l++) acc[l] = 0.0;
    for (int i = 0; i < K; i++) {
        int bi = i * (i + 1) / 2;
        for (int l = 0; l < LANES; l++) s[l] = l < n ? w[l * K + i] : 0.0;
        for (int k = 0; k < i; k++) {
            const double *a = L + (bi + k) * LANES;
            for (int l = 0; l < LANES; l++) s[l] -= a[l] * y[k][l];
        }
        const double *d = L + (bi + i) * LANES;
        for (int l = 0; l < LANES; l++) { y[i][l] = s[l] / d[l]; acc[l] += y[i][l] * y[i][l]; }
    }
}

static void group(const float *flat, const double *w, const double *r, Py_ssize_t n, double *L, double *q) {
    double y[K][LANES], acc[LANES];
    int bad[LANES];
    factorise(flat, r, n, L, bad);
    forward_solve(L, w, n, y, acc);
    for (Py_ssize_t l = 0; l < n; l++) q[l] = (bad[l] || !isfinite(acc[l])) ? NAN : acc[l];
}

/* ½(wᵀC⁻¹w + log det C), α = C⁻¹w and, when X is given, diag(C⁻¹) = column sums of (L⁻¹)² (X: workspace). */
VECTOR_CLONES
static void nll_group(const float *flat, const double *w, const double *r, Py_ssize_t n, double *L, double *X,
                      double *nll, double *alpha, double *cinv) {
    double y[K][LANES], acc[LANES], s[LANES], logdet[LANES];
    int bad[LANES];
    factorise(flat, r, n, L, bad);
    forward_solve(L, w, n, y, acc);
    for (int l = 0; l < LANES; l++) logdet[l] = 0.0;
    for (int i = 0; i < K; i++)
        for (int l = 0; l < LANES; l++) logdet[l] += log(L[(i * (i + 1) / 2 + i) * LANES + l]);
    for (int i = K - 1; i >= 0; i--) {      /* α = L⁻ᵀ y, overwriting y */
        for (int l = 0; l < LANES; l++) s[l] = y[i][l];
        for (int k = i + 1; k < K; k++) {
            const double *a = L + (k * (k + 1) / 2 + i) * LANES;
            for (int l = 0; l < LANES; l++) s[l] -= a[l] * y[k][l];
        }
        const double *d = L + (i * (i + 1) / 2 + i) * LANES;
        for (int l = 0; l < LANES; l++) y[i][l] = s[l] / d[l];
    }
    for (Py_ssize_t l = 0; l < n; l++) {
        nll[l] = bad[l] ? NAN : 0.5 * acc[l] + logdet[l];
        for (int i = 0; i < K; i++) alpha[l * K + i] = bad[l] ? NAN : y[i][l];
    }
    if (!X) return;
    for (int j = 0; j < K; j++) {           /* X = L⁻¹, column j, rows i ≥ j */
        int bj = j * (j + 1) / 2;
        for (int l = 0; l < LANES; l++) X[(bj + j) * LANES + l] = 1.0 / L[(bj + j) * LANES + l];
        for (int i = j + 1; i < K; i++) {
            int bi = i * (i + 1) / 2;
            for (int l = 0; l < LANES; l++) s[l] = 0.0;
            for (int k = j; k < i; k++) {
                const double *a = L + (bi + k) * LANES, *b = X + (k * (k + 1) / 2 + j) * LANES;
                for (int l = 0; l < LANES; l++) s[l] -= a[l] * b[l];
            }
            const double *d = L + (bi + i) * LANES;
            for (int l = 0; l < LANES; l++) X[(bi + j) * LANES + l] = s[l] / d[l];
        }
    }
    for (int j = 0; j < K; j++) {
        for (int l = 0; l < LANES; l++) s[l] = 0.0;
        for (int i = j; i < K; i++) {
            const double *b = X + (i * (i + 1) / 2 + j) * LANES;
            for (int l = 0; l < LANES; l++) s[l] += b[l] * b[l];
        }
        for (Py_ssize_t l = 0; l < n; l++) cinv[l * K + j] = bad[l] ? NAN : s[l];
    }
}

PyDoc_STRVAR(quadratic_forms_doc,
"quadratic_forms(flat, w, r, q) -> None\n\n"
"flat: C-contiguous float32 buffer of M*1485 strict lower triangles; w: float64 buffer of M*55 whitened\n"
"residuals; r: float64 buffer of M*55 added to the diagonal, or None; q: writable float64 buffer of M for\n"
"wᵀ(R + diag r)⁻¹w (NaN where not positive definite or not finite).");

static PyObject *quadratic_forms(PyObject *self, PyObject *args) {
    Py_buffer flat, w, q, r = {0};
    PyObject *r_obj;
    if (!PyArg_ParseTuple(args, "y*y*Ow*", &flat, &w, &r_obj, &q)) return NULL;
    PyObject *result = NULL;
    int has_r = r_obj != Py_None;
    if (has_r && PyObject_GetBuffer(r_obj, &r, PyBUF_SIMPLE) < 0) goto done;
    Py_ssize_t m = q.len / (Py_ssize_t)sizeof(double);
    if (q.len != m * (Py_ssize_t)sizeof(double) || flat.len != m * NCORR * (Py_ssize_t)sizeof(float) ||
        w.len != m * K * (Py_ssize_t)sizeof(double) || (has_r && r.len != w.len)) {
        PyErr_SetString(PyExc_ValueError, "inconsistent buffer sizes (flat M*1485 float32, w and r M*55 float64, "
                                          "q M float64)");
        goto done;
    }
    double *L = PyMem_RawMalloc(sizeof(double) * NPACK * LANES);
    if (!L) { PyErr_NoMemory(); goto done; }
    Py_BEGIN_ALLOW_THREADS
    const float *f = flat.buf;
    const double *wv = w.buf, *rv = has_r ? r.buf : NULL;
    double *out = q.buf;
    for (Py_ssize_t g = 0; g < m; g += LANES) {
        Py_ssize_t n = m - g < LANES ? m - g : LANES;
        group(f + g * NCORR, wv + g * K, rv ? rv + g * K : NULL, n, L, out + g);
    }
    Py_END_ALLOW_THREADS
    PyMem_RawFree(L);
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&flat);
    PyBuffer_Release(&w);
    PyBuffer_Release(&q);
    if (has_r && r.obj) PyBuffer_Release(&r);
    return result;
}

PyDoc_STRVAR(whitened_nll_doc,
"whitened_nll(flat, w, r, nll, alpha, cinv) -> None\n\n"
"For C = R + diag(r) per row (flat: float32 M*1485; w, r: float64 M*55): nll (float64 M) = ½(wᵀC⁻¹w + log det C),\n"
"alpha (float64 M*55) = C⁻¹w and, unless cinv is None, cinv (float64 M*55) = diag(C⁻¹). NaN rows where C is\n"
"not positive definite.");

static PyObject *whitened_nll(PyObject *self, PyObject *args) {
    Py_buffer flat, w, r, nll, alpha, cinv = {0};
    PyObject *cinv_obj;
    if (!PyArg_ParseTuple(args, "y*y*y*w*w*O", &flat, &w, &r, &nll, &alpha, &cinv_obj)) return NULL;
    PyObject *result = NULL;
    int has_cinv = cinv_obj != Py_None;
    double *L = NULL, *X = NULL;
    if (has_cinv && PyObject_GetBuffer(cinv_obj, &cinv, PyBUF_WRITABLE) < 0) goto done;
    Py_ssize_t m = nll.len / (Py_ssize_t)sizeof(double);
    Py_ssize_t vec = m * K * (Py_ssize_t)sizeof(double);
    if (nll.len != m * (Py_ssize_t)sizeof(double) || flat.len != m * NCORR * (Py_ssize_t)sizeof(float) ||
        w.len != vec || r.len != vec || alpha.len != vec || (has_cinv && cinv.len != vec)) {
        PyErr_SetString(PyExc_ValueError, "inconsistent buffer sizes (flat M*1485 float32, w, r, alpha, cinv "
                                          "M*55 float64, nll M float64)");
        goto done;
    }
    L = PyMem_RawMalloc(sizeof(double) * NPACK * LANES);
    X = has_cinv ? PyMem_RawMalloc(sizeof(double) * NPACK * LANES) : NULL;
    if (!L || (has_cinv && !X)) { PyErr_NoMemory(); goto done; }
    Py_BEGIN_ALLOW_THREADS
    const float *f = flat.buf;
    const double *wv = w.buf, *rv = r.buf;
    double *nv = nll.buf, *av = alpha.buf, *cv = has_cinv ? cinv.buf : NULL;
    for (Py_ssize_t g = 0; g < m; g += LANES) {
        Py_ssize_t n = m - g < LANES ? m - g : LANES;
        nll_group(f + g * NCORR, wv + g * K, rv + g * K, n, L, X, nv + g, av + g * K, cv ? cv + g * K : NULL);
    }
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    PyMem_RawFree(L);
    PyMem_RawFree(X);
    PyBuffer_Release(&flat);
    PyBuffer_Release(&w);
    PyBuffer_Release(&r);
    PyBuffer_Release(&nll);
    PyBuffer_Release(&alpha);
    if (has_cinv && cinv.obj) PyBuffer_Release(&cinv);
    return result;
}

static PyMethodDef methods[] = {
    {"quadratic_forms", quadratic_forms, METH_VARARGS, quadratic_forms_doc},
    {"whitened_nll", whitened_nll, METH_VARARGS, whitened_nll_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_wchi2",
                                    "Compiled whitened χ² of XP bands (see shared/covariance.py).", -1, methods};

PyMODINIT_FUNC PyInit__wchi2(void) { return PyModule_Create(&module); }
