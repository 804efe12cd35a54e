{
  "targets": [
    {
      "target_name": "ice_native",
      "sources": ["native/ice_kernels.c"],
      "cflags": ["-O3", "-std=gnu11", "-ffp-contract=off", "-fno-math-errno", "-fopenmp-simd", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "libraries": ["-ldl", "-lm"]
    }
  ]
}
