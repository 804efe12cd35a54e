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
#include <math.h>
#include <node_api.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

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

static void set_threads(int lib, int threads) {
  if (lib == LIB_DNNL && p_omp_set_num_threads) p_omp_set_num_threads(threads);
  if (lib == LIB_OPENBLAS && p_openblas_set_num_threads) p_openblas_set_num_threads(threads);
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
// Elementwise loops are compiled for AVX-512, AVX2 and the x86-64 baseline; the loader picks one
// for this CPU (GCC function multiversioning). fp-contract=off holds in every clone (no FMA).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define MULTIVERSION __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define MULTIVERSION
#endif

MULTIVERSION static void adamw_loop(int64_t len, const float *P, const float *G, const float *Mi, const float *Vi, float *Po, float *Mo, float *Vo,
                                    float coef, float b1, float omb1, float b2, float omb2, float eps, float step, float keep, int decay,
                                    int clip) {
  for (int64_t i = 0; i < len; i++) {
    const float g = clip ? G[i] * coef : G[i];
    const float m = Mi[i] * b1 + g * omb1;
    const float v = Vi[i] * b2 + (g * g) * omb2;
    const float upd = (m / (sqrtf(v) + eps)) * step;
    Po[i] = (decay ? P[i] * keep : P[i]) - upd;
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
  adamw_loop((int64_t)n, P, G, Mi, Vi, Po, Mo, Vo, coefp ? *coefp : 1.0f, b1, omb1, b2, omb2, eps, step, keep, decay, coefp != NULL);
  return NULL;
}

// ---------------------------------------------------------------- module

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
      {"load", NULL, js_load, NULL, NULL, NULL, napi_default, NULL},
      {"gemm", NULL, js_gemm, NULL, NULL, NULL, napi_default, NULL},
      {"adamw", NULL, js_adamw, NULL, NULL, NULL, napi_default, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof *props, props) != napi_ok) return NULL;
  return exports;
}
