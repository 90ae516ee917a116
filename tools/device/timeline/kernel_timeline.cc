// A CUDA injection library (CUDA_INJECTION64_PATH) that records every kernel's start and end on
// the GPU through CUPTI's activity API, graph replays included, without serialising them
// (CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL). nsys does not run on the device machines; this gives
// the same kernel rows, so a captured decode step's critical path and idle gaps can be read
// (tools/device/timeline_summary.py). Built and run by tools/device/timeline.sh.
//
//   CUDA_INJECTION64_PATH=libkernel_timeline.so DSV4_TIMELINE_OUT=rows.csv some_cuda_program ...
//
// Writes one CSV row per kernel: start_ns,end_ns,stream,graph_id,graph_node,correlation,grid,
// block,registers,dynamic_smem,name (demangled, quoted).
#include <cupti.h>
#include <cxxabi.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>

namespace {

constexpr size_t kBufferBytes = 8u << 20;
std::FILE* out = nullptr;
std::mutex out_mutex;

void CUPTIAPI buffer_requested(uint8_t** buffer, size_t* size, size_t* max_records) {
  *buffer = static_cast<uint8_t*>(std::aligned_alloc(8, kBufferBytes));
  *size = *buffer ? kBufferBytes : 0;
  *max_records = 0;
}

std::string demangled(const char* name) {
  if (!name) return "?";
  int status = 0;
  char* d = abi::__cxa_demangle(name, nullptr, nullptr, &status);
  std::string s = status == 0 && d ? d : name;
  std::free(d);
  for (char& c : s) {
    if (c == '"') c = '\'';
  }
  return s;
}

void CUPTIAPI buffer_completed(CUcontext, uint32_t, uint8_t* buffer, size_t, size_t valid) {
  CUpti_Activity* record = nullptr;
  std::lock_guard<std::mutex> lock(out_mutex);
  while (cuptiActivityGetNextRecord(buffer, valid, &record) == CUPTI_SUCCESS) {
    if (record->kind != CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) continue;
    const auto* k = reinterpret_cast<const CUpti_ActivityKernel10*>(record);
    if (out) {
      std::fprintf(out, "%llu,%llu,%u,%u,%llu,%u,%dx%dx%d,%dx%dx%d,%u,%d,\"%s\"\n",
                   static_cast<unsigned long long>(k->start), static_cast<unsigned long long>(k->end), k->streamId,
                   k->graphId, static_cast<unsigned long long>(k->graphNodeId), k->correlationId, k->gridX, k->gridY,
                   k->gridZ, k->blockX, k->blockY, k->blockZ, static_cast<unsigned>(k->registersPerThread),
                   k->dynamicSharedMemory, demangled(k->name).c_str());
    }
  }
  size_t dropped = 0;
  if (cuptiActivityGetNumDroppedRecords(nullptr, 0, &dropped) == CUPTI_SUCCESS && dropped) {
    std::fprintf(stderr, "kernel_timeline: %zu records dropped\n", dropped);
  }
  std::free(buffer);
}

void finish() {
  cuptiActivityFlushAll(1);
  std::lock_guard<std::mutex> lock(out_mutex);
  if (out) std::fclose(out);
  out = nullptr;
}

bool ok(CUptiResult r, const char* what) {
  if (r == CUPTI_SUCCESS) return true;
  const char* msg = nullptr;
  cuptiGetResultString(r, &msg);
  std::fprintf(stderr, "kernel_timeline: %s: %s\n", what, msg ? msg : "?");
  return false;
}

}  // namespace

extern "C" int InitializeInjection() {
  const char* path = std::getenv("DSV4_TIMELINE_OUT");
  if (!path) path = "kernel_timeline.csv";
  out = std::fopen(path, "w");
  if (!out) {
    std::fprintf(stderr, "kernel_timeline: cannot open %s\n", path);
    return 0;
  }
  std::fprintf(out, "start_ns,end_ns,stream,graph_id,graph_node,correlation,grid,block,registers,dynamic_smem,name\n");
  if (!ok(cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed), "registering the buffers") ||
      !ok(cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL), "enabling kernel records")) {
    return 0;
  }
  std::atexit(finish);
  return 1;
}
