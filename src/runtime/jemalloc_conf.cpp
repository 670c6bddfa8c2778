// Linked into nextn's executables (not into libnextn): jemalloc reads its options from this
// symbol at start-up. Freed pages are kept for reuse instead of being returned to the kernel:
// training and decoding allocate and free the same large tensors every step, and faulting fresh
// pages in costs more than the kernels that fill them (measured on a 2-core VM: a [2048, 8192]
// fp32 log_softmax 230 ms with glibc malloc, 14 ms with pages kept; see docs/BENCHMARKS.md).
extern "C" {
const char* malloc_conf = "dirty_decay_ms:-1,muzzy_decay_ms:-1";
}
