// The helper threads of nextn's own CPU kernels (few_rows_matmul).
//
// Decoding calls a kernel every few microseconds, so helpers that went to sleep between calls
// would cost a wake-up (tens of microseconds) each time; helpers that spin like OpenMP's would
// keep a core from OpenBLAS's threads, which run the attention's and the prefill's products on the
// same cores (on 2 cores a spinning OpenMP team made a 3-row verify forward 2x slower). So helpers
// spin between jobs but give the core away at every turn (sched_yield, as OpenBLAS's threads do)
// and sleep after kSpinSeconds without work: decoding finds them awake, training never sees them.
#pragma once

#include <functional>

namespace nextn::kernels {

// Runs part(0), ..., part(parts - 1), each exactly once: part 0 on the calling thread, the others
// on helper threads (started on first use, up to parts - 1 of them), except that a part no helper
// has started by the time the caller is done with its own runs on the caller: a helper whose core
// another thread holds delays nothing. Returns when all are done.
// A second caller while the helpers are busy, or a part that calls run_in_parts again, runs all
// its parts itself, one after the other.
// If parts throw, the first exception (by part index) is rethrown once every part has finished.
void run_in_parts(int parts, const std::function<void(int)>& part);

// How long an idle helper keeps polling for work before it sleeps.
constexpr double kSpinSeconds = 0.002;

}  // namespace nextn::kernels
