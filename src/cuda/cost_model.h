// What one token costs on the device, for benchmark reports (dsv4 bench): the bytes a decode step
// must read (PERFORMANCE.md §1.1-1.2: every active weight byte once, the routed experts' k/n share,
// the LM head, and the f32 KV rows attended or scanned at that context), and the flops of a prefill
// token (PERFORMANCE.md §2.1: two per active weight element, the attention and indexer products).
// Both are the floors the measured rates are compared with, not measurements.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>

#include "cuda/device_model.h"
#include "util/status.h"

namespace dsv4::cuda {

uint64_t decode_step_bytes(const DeviceModel& model, int64_t context);
double prefill_flops_per_token(const DeviceModel& model, int64_t context);

// The current device's name and memory, e.g. "NVIDIA H200, 139.8 GiB".
std::string device_description();
// Device-to-device copy bandwidth (bytes read + written per second / 1e9), best of several
// cudaMemcpyAsync of 512 MiB timed with events.
Result<double> measure_copy_gb_per_s();

}  // namespace dsv4::cuda
