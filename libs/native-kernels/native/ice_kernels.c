// Native kernels for the tfjs wasm backend: GEMM through oneDNN or OpenBLAS (found with dlopen at
// run time, so no -dev package is needed to build) and fused elementwise loops, all working in
// place on the wasm heap. Every entry point gets the heap's ArrayBuffer and byte offsets into it,
// never a cached pointer: a WebAssembly.Memory that grows replaces its ArrayBuffer.
//
// Built with -ffp-contract=off and without -ffast-math: each float operation rounds like the wasm
// kernels' (no FMA contraction, no reassociation), which the AdamW update relies on to match the
// stock tfjs chain bit for bit.
#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <math.h>
#include <node_api.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Elementwise loops are compiled for AVX-512, AVX2 and the x86-64 baseline; the loader picks one
// for this CPU (GCC function multiversioning). fp-contract=off holds in every clone (no FMA).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define MULTIVERSION __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define MULTIVERSION
#endif


// ---------------------------------------------------------------- the BLAS libraries (declared here, loaded at run time)

typedef int (*dnnl_sgemm_fn)(char transa, char transb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                             const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
typedef struct {
  int major, minor, patch;
  const char *hash;
  unsigned cpu_runtime, gpu_runtime;
} dnnl_version_info;
typedef const dnnl_version_info *(*dnnl_version_fn)(void);
typedef void (*omp_set_num_threads_fn)(int);

enum { CBLAS_ROW_MAJOR = 101, CBLAS_NO_TRANS = 111, CBLAS_TRANS = 112 };
typedef void (*cblas_sgemm_fn)(int order, int transa, int transb, int M, int N, int K, float alpha, const float *A, int lda,
                               const float *B, int ldb, float beta, float *C, int ldc);
typedef void (*openblas_set_num_threads_fn)(int);
typedef char *(*openblas_get_config_fn)(void);

enum { LIB_NONE = 0, LIB_DNNL = 1, LIB_OPENBLAS = 2 };
static const char *const LIB_NAMES[] = {"none", "dnnl", "openblas"};

typedef struct {
  void *handle;
  char path[512];
  char version[256];
} lib_state;

static lib_state libs[3];
static int active = LIB_NONE;
static dnnl_sgemm_fn p_dnnl_sgemm;
static omp_set_num_threads_fn p_omp_set_num_threads;
static cblas_sgemm_fn p_cblas_sgemm;
static openblas_set_num_threads_fn p_openblas_set_num_threads;

static void lib_path(lib_state *s, void *sym) {
  Dl_info info;
  if (dladdr(sym, &info) && info.dli_fname) snprintf(s->path, sizeof s->path, "%s", info.dli_fname);
}

// Returns NULL on success, else why the library could not be used (written to err).
static const char *open_dnnl(char *err, size_t n) {
  lib_state *s = &libs[LIB_DNNL];
  if (s->handle) return NULL;
  const char *names[] = {"libdnnl.so.2", "libdnnl.so.3", "libdnnl.so"};
  void *h = NULL;
  for (size_t i = 0; i < sizeof names / sizeof *names && !h; i++) h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    snprintf(err, n, "libdnnl.so.2 not found (Debian: apt-get install libdnnl2)");
    return err;
  }
  dnnl_sgemm_fn gemm = (dnnl_sgemm_fn)dlsym(h, "dnnl_sgemm");
  if (!gemm) {
    snprintf(err, n, "libdnnl has no dnnl_sgemm");
    dlclose(h);
    return err;
  }
  // oneDNN's Debian build threads with OpenMP (libgomp, a dependency of libdnnl, so dlsym finds it).
  p_omp_set_num_threads = (omp_set_num_threads_fn)dlsym(h, "omp_set_num_threads");
  dnnl_version_fn ver = (dnnl_version_fn)dlsym(h, "dnnl_version");
  const dnnl_version_info *v = ver ? ver() : NULL;
  if (v)
    snprintf(s->version, sizeof s->version, "oneDNN %d.%d.%d", v->major, v->minor, v->patch);
  else
    snprintf(s->version, sizeof s->version, "oneDNN");
  s->handle = h;
  p_dnnl_sgemm = gemm;
  lib_path(s, (void *)gemm);
  return NULL;
}

static const char *open_openblas(char *err, size_t n) {
  lib_state *s = &libs[LIB_OPENBLAS];
  if (s->handle) return NULL;
  const char *names[] = {"libopenblas.so.0", "libopenblas.so"};
  void *h = NULL;
  for (size_t i = 0; i < sizeof names / sizeof *names && !h; i++) h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    snprintf(err, n, "libopenblas.so.0 not found (Debian: apt-get install libopenblas0)");
    return err;
  }
  cblas_sgemm_fn gemm = (cblas_sgemm_fn)dlsym(h, "cblas_sgemm");
  if (!gemm) {
    snprintf(err, n, "libopenblas has no cblas_sgemm");
    dlclose(h);
    return err;
  }
  p_openblas_set_num_threads = (openblas_set_num_threads_fn)dlsym(h, "openblas_set_num_threads");
  openblas_get_config_fn cfg = (openblas_get_config_fn)dlsym(h, "openblas_get_config");
  snprintf(s->version, sizeof s->version, "%s", cfg ? cfg() : "OpenBLAS");
  s->handle = h;
  p_cblas_sgemm = gemm;
  lib_path(s, (void *)gemm);
  return NULL;
}

static int n_threads = 1;

static void set_threads(int lib, int threads) {
  n_threads = threads;
  if (lib == LIB_DNNL && p_omp_set_num_threads) p_omp_set_num_threads(threads);
  if (lib == LIB_OPENBLAS && p_openblas_set_num_threads) p_openblas_set_num_threads(threads);
}

// OpenMP's thread count is a per-thread setting: a Node worker thread calling in gets it here
// (a cheap store), instead of OpenMP's default of one thread per core.
static void apply_threads(void) {
  if (active == LIB_DNNL && p_omp_set_num_threads) p_omp_set_num_threads(n_threads);
}

// C[M,N] (row stride ldc) = op(A)·op(B) + beta·C, row-major; op(X) = Xᵀ when the flag is set.
// Returns 0 or the library's error status.
static int sgemm(int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                 float *C, int64_t ldc) {
  if (active == LIB_DNNL) return p_dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
  p_cblas_sgemm(CBLAS_ROW_MAJOR, ta ? CBLAS_TRANS : CBLAS_NO_TRANS, tb ? CBLAS_TRANS : CBLAS_NO_TRANS, (int)M, (int)N, (int)K, 1.0f, A,
                (int)lda, B, (int)ldb, beta, C, (int)ldc);
  return 0;
}

// ---------------------------------------------------------------- N-API helpers

#define CHECK(call)                                                                                                                        \
  do {                                                                                                                                     \
    if ((call) != napi_ok) {                                                                                                               \
      napi_throw_error(env, NULL, "ice_native: N-API call failed: " #call);                                                               \
      return NULL;                                                                                                                         \
    }                                                                                                                                      \
  } while (0)

static napi_value throw_msg(napi_env env, const char *msg) {
  napi_throw_error(env, NULL, msg);
  return NULL;
}

// The heap (an ArrayBuffer) and the parameter block (a Float64Array) every kernel takes.
typedef struct {
  uint8_t *heap;
  size_t heap_len;
  const double *p;
  size_t np;
} call_args;

static int get_call_args(napi_env env, napi_callback_info info, call_args *out, size_t min_params) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2) {
    napi_throw_type_error(env, NULL, "ice_native: expected (heap: ArrayBuffer, params: Float64Array)");
    return 0;
  }
  void *data;
  if (napi_get_arraybuffer_info(env, argv[0], &data, &out->heap_len) != napi_ok) {
    napi_throw_type_error(env, NULL, "ice_native: the heap must be an ArrayBuffer");
    return 0;
  }
  out->heap = (uint8_t *)data;
  napi_typedarray_type type;
  size_t length;
  void *pdata;
  if (napi_get_typedarray_info(env, argv[1], &type, &length, &pdata, NULL, NULL) != napi_ok || type != napi_float64_array) {
    napi_throw_type_error(env, NULL, "ice_native: params must be a Float64Array");
    return 0;
  }
  if (length < min_params) {
    napi_throw_range_error(env, NULL, "ice_native: too few params");
    return 0;
  }
  out->p = (const double *)pdata;
  out->np = length;
  return 1;
}

// A float32 region [off, off + 4·count) inside the heap, or NULL (and a thrown error).
static float *region(napi_env env, const call_args *a, double off, double count, const char *what) {
  if (!(off >= 0) || !(count >= 0) || off + 4 * count > (double)a->heap_len || ((uint64_t)off & 3)) {
    char msg[160];
    snprintf(msg, sizeof msg, "ice_native: %s [%.0f, +%.0f floats) is outside the wasm heap (%zu bytes)", what, off, count, a->heap_len);
    napi_throw_range_error(env, NULL, msg);
    return NULL;
  }
  return (float *)(a->heap + (uint64_t)off);
}

// ---------------------------------------------------------------- load(which, threads)

static napi_value lib_info(napi_env env, int lib, int threads) {
  napi_value obj, v;
  CHECK(napi_create_object(env, &obj));
  CHECK(napi_create_string_utf8(env, LIB_NAMES[lib], NAPI_AUTO_LENGTH, &v));
  CHECK(napi_set_named_property(env, obj, "library", v));
  CHECK(napi_create_string_utf8(env, libs[lib].path, NAPI_AUTO_LENGTH, &v));
  CHECK(napi_set_named_property(env, obj, "path", v));
  CHECK(napi_create_string_utf8(env, libs[lib].version, NAPI_AUTO_LENGTH, &v));
  CHECK(napi_set_named_property(env, obj, "version", v));
  CHECK(napi_create_int32(env, threads, &v));
  CHECK(napi_set_named_property(env, obj, "threads", v));
  return obj;
}

// load("dnnl" | "openblas" | "auto", threads) → { library, path, version, threads }; throws why not.
static napi_value js_load(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2) return throw_msg(env, "ice_native.load(which, threads)");
  char which[16] = {0};
  size_t len;
  CHECK(napi_get_value_string_utf8(env, argv[0], which, sizeof which, &len));
  int32_t threads;
  CHECK(napi_get_value_int32(env, argv[1], &threads));
  if (threads < 1) return throw_msg(env, "ice_native.load: threads must be ≥ 1");
  char err1[256] = {0}, err2[256] = {0}, msg[600];
  int want_dnnl = !strcmp(which, "dnnl") || !strcmp(which, "auto");
  int want_blas = !strcmp(which, "openblas") || !strcmp(which, "auto");
  if (!want_dnnl && !want_blas) return throw_msg(env, "ice_native.load: which must be dnnl, openblas or auto");
  const char *e1 = want_dnnl ? open_dnnl(err1, sizeof err1) : "not requested";
  int lib = LIB_NONE;
  if (!e1)
    lib = LIB_DNNL;
  else if (want_blas && !open_openblas(err2, sizeof err2))
    lib = LIB_OPENBLAS;
  if (lib == LIB_NONE) {
    if (want_dnnl && want_blas)
      snprintf(msg, sizeof msg, "%s; %s", err1, err2);
    else
      snprintf(msg, sizeof msg, "%s", want_dnnl ? err1 : err2);
    return throw_msg(env, msg);
  }
  active = lib;
  set_threads(lib, threads);
  return lib_info(env, lib, threads);
}

// ---------------------------------------------------------------- gemm

enum { ACT_LINEAR = 0, ACT_RELU = 1, ACT_RELU6 = 2, ACT_PRELU = 3, ACT_LEAKYRELU = 4, ACT_SIGMOID = 5, ACT_ELU = 6 };

static inline float activate(int act, float x, float alpha, const float *prelu) {
  switch (act) {
    case ACT_RELU:
      return x < 0.0f ? 0.0f : x;
    case ACT_RELU6:
      return x < 0.0f ? 0.0f : (x > 6.0f ? 6.0f : x);
    case ACT_PRELU:
      return x < 0.0f ? *prelu * x : x;
    case ACT_LEAKYRELU:
      return x < 0.0f ? alpha * x : x;
    case ACT_SIGMOID:
      return 1.0f / (1.0f + expf(-x));
    case ACT_ELU:
      return x < 0.0f ? expf(x) - 1.0f : x;
    default:
      return x;
  }
}

// params (element counts unless "byte"):
//  0 batch  1 M  2 N  3 K  4 transA  5 transB
//  6 a byte offset  7 a batch stride  8 lda   9 b byte offset  10 b batch stride  11 ldb
// 12 c byte offset 13 c batch stride 14 ldc
// 15 bias byte offset (< 0: none) 16..18 bias strides over (batch, row, col)
// 19 activation 20 leaky-relu alpha 21 prelu byte offset 22..24 prelu strides
// A batch stride of 0 broadcasts that operand over the batch.
#define GEMM_NP 25
static napi_value js_gemm(napi_env env, napi_callback_info info) {
  call_args a;
  if (!get_call_args(env, info, &a, GEMM_NP)) return NULL;
  if (active == LIB_NONE) return throw_msg(env, "ice_native.gemm: no BLAS library loaded");
  apply_threads();
  const double *p = a.p;
  const int64_t batch = (int64_t)p[0], M = (int64_t)p[1], N = (int64_t)p[2], K = (int64_t)p[3];
  const int ta = p[4] != 0, tb = p[5] != 0;
  const int64_t sa = (int64_t)p[7], lda = (int64_t)p[8], sb = (int64_t)p[10], ldb = (int64_t)p[11], sc = (int64_t)p[13],
                ldc = (int64_t)p[14];
  const int act = (int)p[19];
  const float alpha = (float)p[20];
  if (batch <= 0 || M <= 0 || N <= 0) return NULL;  // empty output: nothing to write
  // Extents (last element + 1) of each operand, for the bounds check.
  const double rowsA = ta ? (double)K : (double)M, colsA = ta ? (double)M : (double)K;
  const double rowsB = tb ? (double)N : (double)K, colsB = tb ? (double)K : (double)N;
  float *C = region(env, &a, p[12], (double)(batch - 1) * sc + (M - 1) * (double)ldc + N, "gemm C");
  if (!C) return NULL;
  const float *A = NULL, *B = NULL;
  if (K > 0) {
    A = region(env, &a, p[6], (double)(batch - 1) * sa + (rowsA - 1) * lda + colsA, "gemm A");
    if (!A) return NULL;
    B = region(env, &a, p[9], (double)(batch - 1) * sb + (rowsB - 1) * ldb + colsB, "gemm B");
    if (!B) return NULL;
  }
  const int has_bias = p[15] >= 0;
  const int64_t bsB = (int64_t)p[16], bsM = (int64_t)p[17], bsN = (int64_t)p[18];
  const float *bias = NULL;
  if (has_bias) {
    bias = region(env, &a, p[15], (double)(batch - 1) * bsB + (M - 1) * (double)bsM + (N - 1) * (double)bsN + 1, "gemm bias");
    if (!bias) return NULL;
  }
  const int64_t psB = (int64_t)p[22], psM = (int64_t)p[23], psN = (int64_t)p[24];
  const float *prelu = NULL;
  if (act == ACT_PRELU) {
    prelu = region(env, &a, p[21], (double)(batch - 1) * psB + (M - 1) * (double)psM + (N - 1) * (double)psN + 1, "gemm prelu weights");
    if (!prelu) return NULL;
  }

  // The bias goes into C first, then the product is added to it (beta = 1).
  for (int64_t b = 0; b < batch; b++) {
    float *c = C + b * sc;
    if (has_bias) {
      for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) c[i * ldc + j] = bias[b * bsB + i * bsM + j * bsN];
    } else if (K == 0) {
      for (int64_t i = 0; i < M; i++) memset(c + i * ldc, 0, (size_t)N * sizeof(float));
    }
  }
  if (K > 0) {
    const float beta = has_bias ? 1.0f : 0.0f;
    if (batch > 1 && !ta && sb == 0 && lda == K && sa == M * K && ldc == N && sc == M * N) {
      // B shared by every batch and A's rows contiguous across batches: one tall product.
      int st = sgemm(0, tb, batch * M, N, K, A, lda, B, ldb, beta, C, ldc);
      if (st) return throw_msg(env, "ice_native.gemm: the BLAS library returned an error");
    } else {
      for (int64_t b = 0; b < batch; b++) {
        int st = sgemm(ta, tb, M, N, K, A + b * sa, lda, B + b * sb, ldb, beta, C + b * sc, ldc);
        if (st) return throw_msg(env, "ice_native.gemm: the BLAS library returned an error");
      }
    }
  }
  if (act != ACT_LINEAR) {
    for (int64_t b = 0; b < batch; b++)
      for (int64_t i = 0; i < M; i++) {
        float *c = C + b * sc + i * ldc;
        const float *pw = prelu ? prelu + b * psB + i * psM : NULL;
        for (int64_t j = 0; j < N; j++) c[j] = activate(act, c[j], alpha, pw ? pw + j * psN : NULL);
      }
  }
  return NULL;
}

// ---------------------------------------------------------------- AdamW

// One pass over p, g, m, v with the float32 operations of the tfjs chain in adamw.ts, in the same
// order (each rounds to float32; no FMA), so the results are the same to the bit:
//   g ← g·coef (clipping, when a coefficient is given)
//   m' = m·β1 + g·(1−β1);  v' = v·β2 + (g·g)·(1−β2)
//   p' = (decay ? p·keep : p) − (m' / (√v' + eps')) · step
// params: 0 n, 1..4 p g m v byte offsets, 5..7 p' m' v' byte offsets, 8 coef byte offset (< 0: none),
// 9 β1, 10 1−β1, 11 β2, 12 1−β2, 13 eps', 14 step, 15 keep, 16 decay (0/1).
// Every scalar is the float32 rounding of the double the JS code computes, as tf.scalar makes it.
#define ADAMW_NP 17
// Without clipping coef is 1 and without decay keep is 1: x·1 is exactly x, so one loop serves all cases.
MULTIVERSION static void adamw_loop(int64_t len, const float *restrict P, const float *restrict G, const float *restrict Mi,
                                    const float *restrict Vi, float *restrict Po, float *restrict Mo, float *restrict Vo, float coef, float b1,
                                    float omb1, float b2, float omb2, float eps, float step, float keep) {
  for (int64_t i = 0; i < len; i++) {
    const float g = G[i] * coef;
    const float m = Mi[i] * b1 + g * omb1;
    const float v = Vi[i] * b2 + (g * g) * omb2;
    const float upd = (m / (sqrtf(v) + eps)) * step;
    Po[i] = P[i] * keep - upd;
    Mo[i] = m;
    Vo[i] = v;
  }
}

static napi_value js_adamw(napi_env env, napi_callback_info info) {
  call_args a;
  if (!get_call_args(env, info, &a, ADAMW_NP)) return NULL;
  const double *p = a.p;
  const double n = p[0];
  const float *P = region(env, &a, p[1], n, "adamw p"), *G = region(env, &a, p[2], n, "adamw g");
  const float *Mi = region(env, &a, p[3], n, "adamw m"), *Vi = region(env, &a, p[4], n, "adamw v");
  float *Po = region(env, &a, p[5], n, "adamw p out"), *Mo = region(env, &a, p[6], n, "adamw m out"), *Vo = region(env, &a, p[7], n, "adamw v out");
  if (!P || !G || !Mi || !Vi || !Po || !Mo || !Vo) return NULL;
  const float *coefp = NULL;
  if (p[8] >= 0 && !(coefp = region(env, &a, p[8], 1, "adamw clip coefficient"))) return NULL;
  const float b1 = (float)p[9], omb1 = (float)p[10], b2 = (float)p[11], omb2 = (float)p[12], eps = (float)p[13], step = (float)p[14],
              keep = (float)p[15];
  const int decay = p[16] != 0;
  adamw_loop((int64_t)n, P, G, Mi, Vi, Po, Mo, Vo, coefp ? *coefp : 1.0f, b1, omb1, b2, omb2, eps, step, decay ? keep : 1.0f);
  return NULL;
}

// ---------------------------------------------------------------- fused elementwise kernels

// e^x for x ≤ 88.7 (Cephes expf: Cody–Waite reduction, degree-6 polynomial, ≈1 ulp), written with
// plain float operations so that GCC vectorizes the loops it sits in (libm's expf does not).
// Below −87.3 it returns 2^−126·e^r ≈ 1e-38 instead of a subnormal or 0.
static inline float vexpf(float x) {
  x = x < -87.33654f ? -87.33654f : (x > 88.37626f ? 88.37626f : x);
  const float t = x * 1.44269504088896341f + 12582912.0f;  // round(x·log2 e) by the 1.5·2^23 trick
  const float n = t - 12582912.0f;
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  union {
    int32_t i;
    float f;
  } scale = {.i = ((int32_t)n + 127) << 23};
  return p * scale.f;
}

// Φ(x), the standard normal CDF, by Abramowitz & Stegun 7.1.26 for erf (|error| ≤ 1.5e-7), the
// formula of the stock path in fast-ops.ts; *pdf_e gets e^(−x²/2), which the gradient reuses.
#define ERF_P (0.3275911f * 0.70710678118654752f)
#define ERF_A1 (0.254829592f / 2)
#define ERF_A2 (-0.284496736f / 2)
#define ERF_A3 (1.421413741f / 2)
#define ERF_A4 (-1.453152027f / 2)
#define ERF_A5 (1.061405429f / 2)
#define INV_SQRT_2PI 0.3989422804014327f
static inline float normal_cdf(float x, float *pdf_e) {
  const float ax = fabsf(x);
  const float t = 1.0f / (1.0f + ERF_P * ax);
  const float poly = t * (ERF_A1 + t * (ERF_A2 + t * (ERF_A3 + t * (ERF_A4 + t * ERF_A5))));
  const float e = vexpf(-0.5f * (x * x));
  const float q = poly * e;  // (1 − erf(|x|/√2))/2
  *pdf_e = e;
  return x >= 0.0f ? 1.0f - q : q;
}

MULTIVERSION static void gelu_loop(int64_t n, const float *restrict x, float *restrict y) {
  for (int64_t i = 0; i < n; i++) {
    float e;
    y[i] = x[i] * normal_cdf(x[i], &e);
  }
}

// d/dx x·Φ(x) = Φ(x) + x·φ(x)
MULTIVERSION static void gelu_grad_loop(int64_t n, const float *restrict dy, const float *restrict x, float *restrict dx) {
  for (int64_t i = 0; i < n; i++) {
    float e;
    const float c = normal_cdf(x[i], &e);
    dx[i] = dy[i] * (c + x[i] * e * INV_SQRT_2PI);
  }
}

// params: 0 n, 1 x, 2 y (byte offsets)
static napi_value js_gelu(napi_env env, napi_callback_info info) {
  call_args a;
  if (!get_call_args(env, info, &a, 3)) return NULL;
  const float *x = region(env, &a, a.p[1], a.p[0], "gelu x");
  float *y = region(env, &a, a.p[2], a.p[0], "gelu y");
  if (!x || !y) return NULL;
  gelu_loop((int64_t)a.p[0], x, y);
  return NULL;
}

// params: 0 n, 1 dy, 2 x, 3 dx
static napi_value js_gelu_grad(napi_env env, napi_callback_info info) {
  call_args a;
  if (!get_call_args(env, info, &a, 4)) return NULL;
  const float *dy = region(env, &a, a.p[1], a.p[0], "gelu dy"), *x = region(env, &a, a.p[2], a.p[0], "gelu x");
  float *dx = region(env, &a, a.p[3], a.p[0], "gelu dx");
  if (!dy || !x || !dx) return NULL;
  gelu_grad_loop((int64_t)a.p[0], dy, x, dx);
  return NULL;
}

// LayerNorm over the last axis, biased variance (two passes: mean, then Σ(x − mean)²).
MULTIVERSION static void layer_norm_loop(int64_t M, int64_t D, const float *restrict x, const float *restrict gamma,
                                         const float *restrict beta, float eps, float *restrict y, float *restrict mean_out,
                                         float *restrict rstd_out) {
  for (int64_t i = 0; i < M; i++) {
    const float *xr = x + i * D;
    float *yr = y + i * D;
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < D; j++) s += xr[j];
    const float mean = s / (float)D;
    float s2 = 0.0f;
#pragma omp simd reduction(+ : s2)
    for (int64_t j = 0; j < D; j++) {
      const float c = xr[j] - mean;
      s2 += c * c;
    }
    const float rstd = 1.0f / sqrtf(s2 / (float)D + eps);
    for (int64_t j = 0; j < D; j++) yr[j] = (xr[j] - mean) * rstd * gamma[j] + beta[j];
    mean_out[i] = mean;
    rstd_out[i] = rstd;
  }
}

// dx = rstd·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)), ĝ = dy·γ; dγ = Σ_rows dy·x̂; dβ = Σ_rows dy.
MULTIVERSION static void layer_norm_grad_loop(int64_t M, int64_t D, const float *restrict dy, const float *restrict x,
                                              const float *restrict gamma, const float *restrict mean, const float *restrict rstd,
                                              float *restrict dx, float *restrict dgamma, float *restrict dbeta) {
  for (int64_t j = 0; j < D; j++) dgamma[j] = dbeta[j] = 0.0f;
  for (int64_t i = 0; i < M; i++) {
    const float *restrict dyr = dy + i * D, *restrict xr = x + i * D;
    float *restrict dxr = dx + i * D;
    const float mu = mean[i], rs = rstd[i];
    float sa = 0.0f, sb = 0.0f;
#pragma omp simd reduction(+ : sa, sb)
    for (int64_t j = 0; j < D; j++) {
      const float xh = (xr[j] - mu) * rs;
      const float gh = dyr[j] * gamma[j];
      sa += gh;
      sb += gh * xh;
    }
    const float a = sa / (float)D, b = sb / (float)D;
    for (int64_t j = 0; j < D; j++) {
      const float xh = (xr[j] - mu) * rs;
      dxr[j] = rs * ((dyr[j] * gamma[j] - a) - xh * b);
      dgamma[j] += dyr[j] * xh;
      dbeta[j] += dyr[j];
    }
  }
}

// params: 0 M, 1 D, 2 x, 3 γ, 4 β, 5 y, 6 mean, 7 rstd (byte offsets), 8 eps
static napi_value js_layer_norm(napi_env env, napi_callback_info info) {
  call_args a;
  if (!get_call_args(env, info, &a, 9)) return NULL;
  const double M = a.p[0], D = a.p[1];
  const float *x = region(env, &a, a.p[2], M * D, "layerNorm x"), *g = region(env, &a, a.p[3], D, "layerNorm gamma"),
              *b = region(env, &a, a.p[4], D, "layerNorm beta");
  float *y = region(env, &a, a.p[5], M * D, "layerNorm y"), *mu = region(env, &a, a.p[6], M, "layerNorm mean"),
        *rs = region(env, &a, a.p[7], M, "layerNorm rstd");
  if (!x || !g || !b || !y || !mu || !rs) return NULL;
  if (D > 0)
    layer_norm_loop((int64_t)M, (int64_t)D, x, g, b, (float)a.p[8], y, mu, rs);
  else
    for (int64_t i = 0; i < (int64_t)M; i++) mu[i] = rs[i] = NAN;  // the mean of nothing, as tf.mean gives
  return NULL;
}

// params: 0 M, 1 D, 2 dy, 3 x, 4 γ, 5 mean, 6 rstd, 7 dx, 8 dγ, 9 dβ (byte offsets)
static napi_value js_layer_norm_grad(napi_env env, napi_callback_info info) {
  call_args a;
  if (!get_call_args(env, info, &a, 10)) return NULL;
  const double M = a.p[0], D = a.p[1];
  const float *dy = region(env, &a, a.p[2], M * D, "layerNormGrad dy"), *x = region(env, &a, a.p[3], M * D, "layerNormGrad x"),
              *g = region(env, &a, a.p[4], D, "layerNormGrad gamma"), *mu = region(env, &a, a.p[5], M, "layerNormGrad mean"),
              *rs = region(env, &a, a.p[6], M, "layerNormGrad rstd");
  float *dx = region(env, &a, a.p[7], M * D, "layerNormGrad dx"), *dg = region(env, &a, a.p[8], D, "layerNormGrad dgamma"),
        *db = region(env, &a, a.p[9], D, "layerNormGrad dbeta");
  if (!dy || !x || !g || !mu || !rs || !dx || !dg || !db) return NULL;
  layer_norm_grad_loop((int64_t)M, (int64_t)D, dy, x, g, mu, rs, dx, dg, db);
  return NULL;
}

// Column sums of x [M, N] → [N] (a bias gradient).
MULTIVERSION static void col_sum_loop(int64_t M, int64_t N, const float *restrict x, float *restrict out) {
  for (int64_t j = 0; j < N; j++) out[j] = 0.0f;
  for (int64_t i = 0; i < M; i++)
    for (int64_t j = 0; j < N; j++) out[j] += x[i * N + j];
}

// params: 0 M, 1 N, 2 x, 3 out
static napi_value js_col_sum(napi_env env, napi_callback_info info) {
  call_args a;
  if (!get_call_args(env, info, &a, 4)) return NULL;
  const float *x = region(env, &a, a.p[2], a.p[0] * a.p[1], "colSum x");
  float *out = region(env, &a, a.p[3], a.p[1], "colSum out");
  if (!x || !out) return NULL;
  col_sum_loop((int64_t)a.p[0], (int64_t)a.p[1], x, out);
  return NULL;
}

// ---------------------------------------------------------------- attention core

// Row softmax of s·scale in place over an [T, T] block: p = e^(l − max l) / Σ e^(l − max l).
MULTIVERSION static void softmax_rows(int64_t T, float *s, float scale) {
  for (int64_t i = 0; i < T; i++) {
    float *r = s + i * T;
    float m = -INFINITY;
    for (int64_t j = 0; j < T; j++) {
      r[j] *= scale;
      m = r[j] > m ? r[j] : m;
    }
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < T; j++) {
      r[j] = vexpf(r[j] - m);
      sum += r[j];
    }
    for (int64_t j = 0; j < T; j++) r[j] = r[j] / sum;
  }
}

// dS = scale·p·(dP − Σ_k dP·p) over an [T, T] block, written over dP.
MULTIVERSION static void softmax_grad_rows(int64_t T, const float *restrict p, float *restrict dp, float scale) {
  for (int64_t i = 0; i < T; i++) {
    const float *pr = p + i * T;
    float *dr = dp + i * T;
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < T; j++) s += dr[j] * pr[j];
    for (int64_t j = 0; j < T; j++) dr[j] = pr[j] * ((dr[j] - s) * scale);
  }
}

#define GEMM_OR_THROW(call)                                                                                                                \
  do {                                                                                                                                     \
    if (call) return throw_msg(env, "ice_native: the BLAS library returned an error");                                                    \
  } while (0)

// Multi-head self-attention core on timm's layout, with no transposes: qkv [B·T, 3D] holds, per
// row, q | k | v with heads inside each (head h at columns h·hd), so the head (b, h) is a strided
// [T, hd] block of qkv (row stride 3D) that the GEMM reads in place.
//   forward:  P = softmax(Q·Kᵀ·scale) [B·H, T, T] (kept for the backward), out[b·T + t, h·hd + d] = (P·V)
// params: 0 B, 1 T, 2 H, 3 hd, 4 scale, 5 qkv, 6 out, 7 p (byte offsets)
static napi_value js_attention(napi_env env, napi_callback_info info) {
  call_args a;
  if (!get_call_args(env, info, &a, 8)) return NULL;
  if (active == LIB_NONE) return throw_msg(env, "ice_native.attention: no BLAS library loaded");
  apply_threads();
  const int64_t B = (int64_t)a.p[0], T = (int64_t)a.p[1], H = (int64_t)a.p[2], hd = (int64_t)a.p[3];
  const float scale = (float)a.p[4];
  const int64_t D = H * hd, ld = 3 * D;
  const float *qkv = region(env, &a, a.p[5], (double)B * T * ld, "attention qkv");
  float *out = region(env, &a, a.p[6], (double)B * T * D, "attention out"), *P = region(env, &a, a.p[7], (double)B * H * T * T, "attention p");
  if (!qkv || !out || !P) return NULL;
  if (B == 0 || T == 0 || H == 0) return NULL;
  if (hd == 0) {
    // q·kᵀ = 0: uniform attention; no output columns.
    for (int64_t i = 0; i < B * H * T * T; i++) P[i] = 1.0f / (float)T;
    return NULL;
  }
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < H; h++) {
      const float *Q = qkv + b * T * ld + h * hd, *K = Q + D, *V = Q + 2 * D;
      float *S = P + (b * H + h) * T * T;
      GEMM_OR_THROW(sgemm(0, 1, T, T, hd, Q, ld, K, ld, 0.0f, S, T));
      softmax_rows(T, S, scale);
      GEMM_OR_THROW(sgemm(0, 0, T, hd, T, S, T, V, ld, 0.0f, out + b * T * D + h * hd, D));
    }
  return NULL;
}

//   backward: dO = dy's head block; dP = dO·Vᵀ; dS = scale·P·(dP − Σ dP·P);
//             dQ = dS·K, dK = dSᵀ·Q, dV = Pᵀ·dO, written into dqkv [B·T, 3D] at q, k, v's places.
// params: 0 B, 1 T, 2 H, 3 hd, 4 scale, 5 dy, 6 qkv, 7 p, 8 dqkv (byte offsets)
static napi_value js_attention_grad(napi_env env, napi_callback_info info) {
  call_args a;
  if (!get_call_args(env, info, &a, 9)) return NULL;
  if (active == LIB_NONE) return throw_msg(env, "ice_native.attentionGrad: no BLAS library loaded");
  apply_threads();
  const int64_t B = (int64_t)a.p[0], T = (int64_t)a.p[1], H = (int64_t)a.p[2], hd = (int64_t)a.p[3];
  const float scale = (float)a.p[4];
  const int64_t D = H * hd, ld = 3 * D;
  const float *dy = region(env, &a, a.p[5], (double)B * T * D, "attentionGrad dy"), *qkv = region(env, &a, a.p[6], (double)B * T * ld, "attentionGrad qkv"),
              *P = region(env, &a, a.p[7], (double)B * H * T * T, "attentionGrad p");
  float *dqkv = region(env, &a, a.p[8], (double)B * T * ld, "attentionGrad dqkv");
  if (!dy || !qkv || !P || !dqkv) return NULL;
  if (B == 0 || T == 0 || H == 0 || hd == 0) return NULL;
  // Per call, not static: Node worker threads may run kernels at the same time.
  float *dS = (float *)malloc((size_t)(T * T) * sizeof(float));
  if (!dS) return throw_msg(env, "ice_native.attentionGrad: out of memory");
  int st = 0;
  for (int64_t b = 0; b < B && !st; b++)
    for (int64_t h = 0; h < H && !st; h++) {
      const int64_t off = b * T * ld + h * hd;
      const float *Q = qkv + off, *K = Q + D, *V = Q + 2 * D;
      const float *dO = dy + b * T * D + h * hd, *Pb = P + (b * H + h) * T * T;
      float *dQ = dqkv + off, *dK = dQ + D, *dV = dQ + 2 * D;
      st = sgemm(0, 1, T, T, hd, dO, D, V, ld, 0.0f, dS, T);
      if (st) break;
      softmax_grad_rows(T, Pb, dS, scale);
      st = sgemm(0, 0, T, hd, T, dS, T, K, ld, 0.0f, dQ, ld) || sgemm(1, 0, T, hd, T, dS, T, Q, ld, 0.0f, dK, ld) ||
           sgemm(1, 0, T, hd, T, Pb, T, dO, D, 0.0f, dV, ld);
    }
  free(dS);
  if (st) return throw_msg(env, "ice_native.attentionGrad: the BLAS library returned an error");
  return NULL;
}

// ---------------------------------------------------------------- gather

// out[o, i, :] = x[o, idx[i], :] for x [outer, n, inner] (4-byte elements, float32 or int32), axis
// 1 of that view: tf.gather at any axis with batchDims 0. Rows are copied whole (the wasm
// kernel computes every element's source index, ≈30 ns per float).
// params: 0 outer, 1 n, 2 inner, 3 count (indices), 4 x, 5 idx (int32), 6 out
static napi_value js_gather(napi_env env, napi_callback_info info) {
  call_args a;
  if (!get_call_args(env, info, &a, 7)) return NULL;
  const int64_t outer = (int64_t)a.p[0], n = (int64_t)a.p[1], inner = (int64_t)a.p[2], count = (int64_t)a.p[3];
  const float *x = region(env, &a, a.p[4], (double)outer * n * inner, "gather x");
  const int32_t *idx = (const int32_t *)region(env, &a, a.p[5], (double)count, "gather indices");
  float *out = region(env, &a, a.p[6], (double)outer * count * inner, "gather out");
  if (!x || !idx || !out) return NULL;
  for (int64_t i = 0; i < count; i++) {
    if (idx[i] < 0 || idx[i] >= n) {
      char msg[160];
      snprintf(msg, sizeof msg, "ice_native.gather: index %d (position %lld) is not in [0, %lld)", idx[i], (long long)i, (long long)n);
      return throw_msg(env, msg);
    }
  }
  const size_t bytes = (size_t)inner * sizeof(float);
  for (int64_t o = 0; o < outer; o++) {
    const float *src = x + o * n * inner;
    float *dst = out + o * count * inner;
    for (int64_t i = 0; i < count; i++) memcpy(dst + i * inner, src + (int64_t)idx[i] * inner, bytes);
  }
  return NULL;
}

// ---------------------------------------------------------------- ICE margin

// ICE's token score: margin[i] = max_{j<c} z[i, j] − z[i, c], z = x·W, x [M, K], W [K, c+1]
// (background last): > 0 exactly where ICE's mask says foreground. The logits are made and
// reduced a block of rows at a time, so the [M, c+1] matrix never goes through memory (at 1000
// classes it is 4 kB a row; the blocks stay in L2). W is first copied with its rows padded to a
// multiple of 16 floats: the GEMM runs 20 % faster on 64-byte aligned rows than on 1001-float ones.
// params: 0 M, 1 K, 2 C1 (= c + 1), 3 x, 4 w, 5 out
#define MARGIN_ROWS 256

MULTIVERSION static void margin_rows(int64_t m, int64_t c, int64_t ld, const float *restrict z, float *restrict out) {
  for (int64_t r = 0; r < m; r++) {
    const float *zr = z + r * ld;
    // 16 running maxima, so the loop vectorizes without reassociating anything (max is exact).
    float acc[16];
    for (int k = 0; k < 16; k++) acc[k] = -INFINITY;
    int64_t j = 0;
    for (; j + 16 <= c; j += 16)
      for (int k = 0; k < 16; k++) acc[k] = zr[j + k] > acc[k] ? zr[j + k] : acc[k];
    float best = -INFINITY;
    for (; j < c; j++) best = zr[j] > best ? zr[j] : best;
    for (int k = 0; k < 16; k++) best = acc[k] > best ? acc[k] : best;
    out[r] = best - zr[c];
  }
}

static napi_value js_ice_margin(napi_env env, napi_callback_info info) {
  call_args a;
  if (!get_call_args(env, info, &a, 6)) return NULL;
  if (active == LIB_NONE) return throw_msg(env, "ice_native.iceMargin: no BLAS library loaded");
  apply_threads();
  const int64_t M = (int64_t)a.p[0], K = (int64_t)a.p[1], C1 = (int64_t)a.p[2];
  const float *x = region(env, &a, a.p[3], (double)M * K, "iceMargin x"), *w = region(env, &a, a.p[4], (double)K * C1, "iceMargin w");
  float *out = region(env, &a, a.p[5], (double)M, "iceMargin out");
  if (!x || !w || !out) return NULL;
  if (C1 < 2) return throw_msg(env, "ice_native.iceMargin: W needs at least one class column and the background column");
  if (M == 0) return NULL;
  const int64_t rows = M < MARGIN_ROWS ? M : MARGIN_ROWS, ld = (C1 + 15) / 16 * 16;
  // Per call, not static: Node worker threads may run kernels at the same time.
  float *z = (float *)aligned_alloc(64, (size_t)(rows * ld) * sizeof(float));
  float *wp = K > 0 ? (float *)aligned_alloc(64, (size_t)(K * ld) * sizeof(float)) : NULL;
  if (!z || (K > 0 && !wp)) {
    free(z);
    free(wp);
    return throw_msg(env, "ice_native.iceMargin: out of memory");
  }
  for (int64_t k = 0; k < K; k++) {
    memcpy(wp + k * ld, w + k * C1, (size_t)C1 * sizeof(float));
    memset(wp + k * ld + C1, 0, (size_t)(ld - C1) * sizeof(float));
  }
  int st = 0;
  for (int64_t i0 = 0; i0 < M && !st; i0 += rows) {
    const int64_t m = M - i0 < rows ? M - i0 : rows;
    if (K == 0)
      memset(z, 0, (size_t)(m * ld) * sizeof(float));
    else if ((st = sgemm(0, 0, m, ld, K, x + i0 * K, K, wp, ld, 0.0f, z, ld)))
      break;
    margin_rows(m, C1 - 1, ld, z, out + i0);
  }
  free(z);
  free(wp);
  if (st) return throw_msg(env, "ice_native.iceMargin: the BLAS library returned an error");
  return NULL;
}

// ---------------------------------------------------------------- shared memory (the all-reduce between ranks on one machine)

// POSIX shared memory segments as ArrayBuffers, for data-parallel ranks that share a machine:
// each rank writes its gradient into its own segment and reads the others' in place, instead of
// sending them through loopback TCP. The ArrayBuffer owns the mapping (unmapped when collected).

static void unmap_finalize(napi_env env, void *data, void *hint) {
  munmap(data, (size_t)(uintptr_t)hint);
}

static int get_shm_args(napi_env env, napi_callback_info info, char *name, size_t name_len, double *bytes, size_t want) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < want) {
    napi_throw_type_error(env, NULL, "ice_native: expected (name: string, bytes: number)");
    return 0;
  }
  size_t len;
  if (napi_get_value_string_utf8(env, argv[0], name, name_len, &len) != napi_ok || len == 0 || len >= name_len - 1 || name[0] != '/' ||
      strchr(name + 1, '/')) {
    napi_throw_type_error(env, NULL, "ice_native: a shared memory name is '/' then up to 200 characters without '/'");
    return 0;
  }
  if (want > 1 && (napi_get_value_double(env, argv[1], bytes) != napi_ok || !(*bytes >= 1) || *bytes > 1e12)) {
    napi_throw_range_error(env, NULL, "ice_native: shared memory size must be between 1 byte and 1 TB");
    return 0;
  }
  return 1;
}

static napi_value shm_fail(napi_env env, const char *what, const char *name, int err) {
  char msg[400];
  snprintf(msg, sizeof msg, "ice_native: %s of shared memory %s failed: %s", what, name, strerror(err));
  return throw_msg(env, msg);
}

static napi_value map_fd(napi_env env, int fd, size_t bytes, const char *name) {
  void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  int err = errno;
  close(fd);
  if (p == MAP_FAILED) return shm_fail(env, "mmap", name, err);
  napi_value ab;
  if (napi_create_external_arraybuffer(env, p, bytes, unmap_finalize, (void *)(uintptr_t)bytes, &ab) != napi_ok) {
    munmap(p, bytes);
    return throw_msg(env, "ice_native: this Node cannot wrap memory in an ArrayBuffer (external buffers disallowed)");
  }
  return ab;
}

// shmCreate(name, bytes) → ArrayBuffer: a new segment (it must not exist), its pages reserved now
// (posix_fallocate), so that a full /dev/shm is an error here and never a SIGBUS at first write.
static napi_value js_shm_create(napi_env env, napi_callback_info info) {
  char name[208];
  double bytes;
  if (!get_shm_args(env, info, name, sizeof name, &bytes, 2)) return NULL;
  int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
  if (fd < 0) return shm_fail(env, "creation", name, errno);
  int err = posix_fallocate(fd, 0, (off_t)bytes);
  if (err) {
    close(fd);
    shm_unlink(name);
    return shm_fail(env, "reserving the pages", name, err);
  }
  napi_value ab = map_fd(env, fd, (size_t)bytes, name);
  if (!ab) shm_unlink(name);
  return ab;
}

// shmOpen(name, bytes) → ArrayBuffer: another process's segment, which must hold at least `bytes`.
static napi_value js_shm_open(napi_env env, napi_callback_info info) {
  char name[208];
  double bytes;
  if (!get_shm_args(env, info, name, sizeof name, &bytes, 2)) return NULL;
  int fd = shm_open(name, O_RDWR, 0);
  if (fd < 0) return shm_fail(env, "opening", name, errno);
  struct stat st;
  if (fstat(fd, &st) != 0 || (double)st.st_size < bytes) {
    close(fd);
    char msg[400];
    snprintf(msg, sizeof msg, "ice_native: shared memory %s holds %lld bytes, expected %.0f", name, (long long)st.st_size, bytes);
    return throw_msg(env, msg);
  }
  return map_fd(env, fd, (size_t)bytes, name);
}

// shmUnlink(name) → whether it existed. Mappings stay valid until their ArrayBuffers go.
static napi_value js_shm_unlink(napi_env env, napi_callback_info info) {
  char name[208];
  if (!get_shm_args(env, info, name, sizeof name, NULL, 1)) return NULL;
  int ok = shm_unlink(name) == 0;
  if (!ok && errno != ENOENT) return shm_fail(env, "unlinking", name, errno);
  napi_value v;
  CHECK(napi_get_boolean(env, ok, &v));
  return v;
}

MULTIVERSION static void sum_in_order(int64_t n, int64_t w, float *const *src, float *restrict dst, float divisor) {
  for (int64_t i = 0; i < n; i++) dst[i] = src[0][i];
  for (int64_t k = 1; k < w; k++) {
    const float *restrict s = src[k];
    for (int64_t i = 0; i < n; i++) dst[i] = dst[i] + s[i];
  }
  if (divisor != 1.0f)
    for (int64_t i = 0; i < n; i++) dst[i] = dst[i] / divisor;
}

// sumInOrder(buffers: ArrayBuffer[], byteOffset, count, dst, divisor): buffers[dst] at [byteOffset,
// +count floats) becomes (((b0 + b1) + b2) + …) / divisor, rank order, float32 division (the bits of
// JavaScript's division rounded to float32: double rounding is exact for a quotient of floats): the
// same operations on the same bits wherever it runs. Summed into a scratch block first, since dst
// is one of the summands.
#define SUM_BLOCK 4096
static napi_value js_sum_in_order(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 5) return throw_msg(env, "ice_native.sumInOrder(buffers, byteOffset, count, dst, divisor)");
  uint32_t w;
  CHECK(napi_get_array_length(env, argv[0], &w));
  double off, count;
  int32_t dst;
  CHECK(napi_get_value_double(env, argv[1], &off));
  CHECK(napi_get_value_double(env, argv[2], &count));
  CHECK(napi_get_value_int32(env, argv[3], &dst));
  double divisor;
  CHECK(napi_get_value_double(env, argv[4], &divisor));
  if (!(divisor >= 1) || divisor > 16777216) return throw_msg(env, "ice_native.sumInOrder: divisor must be in [1, 2^24]");
  if (w < 1 || w > 1024 || dst < 0 || (uint32_t)dst >= w) return throw_msg(env, "ice_native.sumInOrder: 1–1024 buffers, dst one of them");
  if (!(off >= 0) || !(count >= 0) || ((uint64_t)off & 3)) return throw_msg(env, "ice_native.sumInOrder: bad offset or count");
  float *src[1024];
  for (uint32_t k = 0; k < w; k++) {
    napi_value el;
    void *data;
    size_t len;
    CHECK(napi_get_element(env, argv[0], k, &el));
    if (napi_get_arraybuffer_info(env, el, &data, &len) != napi_ok) return throw_msg(env, "ice_native.sumInOrder: buffers must be ArrayBuffers");
    if (off + 4 * count > (double)len) return throw_msg(env, "ice_native.sumInOrder: the range is outside a buffer");
    src[k] = (float *)((uint8_t *)data + (uint64_t)off);
  }
  float tmp[SUM_BLOCK];
  float *blk[1024];
  const int64_t n = (int64_t)count;
  for (int64_t i0 = 0; i0 < n; i0 += SUM_BLOCK) {
    const int64_t m = n - i0 < SUM_BLOCK ? n - i0 : SUM_BLOCK;
    for (uint32_t k = 0; k < w; k++) blk[k] = src[k] + i0;
    sum_in_order(m, w, blk, tmp, (float)divisor);
    memcpy(src[dst] + i0, tmp, (size_t)m * sizeof(float));
  }
  return NULL;
}

// ---------------------------------------------------------------- module

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
      {"load", NULL, js_load, NULL, NULL, NULL, napi_default, NULL},
      {"gemm", NULL, js_gemm, NULL, NULL, NULL, napi_default, NULL},
      {"adamw", NULL, js_adamw, NULL, NULL, NULL, napi_default, NULL},
      {"gelu", NULL, js_gelu, NULL, NULL, NULL, napi_default, NULL},
      {"geluGrad", NULL, js_gelu_grad, NULL, NULL, NULL, napi_default, NULL},
      {"layerNorm", NULL, js_layer_norm, NULL, NULL, NULL, napi_default, NULL},
      {"layerNormGrad", NULL, js_layer_norm_grad, NULL, NULL, NULL, napi_default, NULL},
      {"colSum", NULL, js_col_sum, NULL, NULL, NULL, napi_default, NULL},
      {"attention", NULL, js_attention, NULL, NULL, NULL, napi_default, NULL},
      {"attentionGrad", NULL, js_attention_grad, NULL, NULL, NULL, napi_default, NULL},
      {"gather", NULL, js_gather, NULL, NULL, NULL, napi_default, NULL},
      {"iceMargin", NULL, js_ice_margin, NULL, NULL, NULL, napi_default, NULL},
      {"shmCreate", NULL, js_shm_create, NULL, NULL, NULL, napi_default, NULL},
      {"shmOpen", NULL, js_shm_open, NULL, NULL, NULL, napi_default, NULL},
      {"shmUnlink", NULL, js_shm_unlink, NULL, NULL, NULL, napi_default, NULL},
      {"sumInOrder", NULL, js_sum_in_order, NULL, NULL, NULL, napi_default, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof *props, props) != napi_ok) return NULL;
  return exports;
}
