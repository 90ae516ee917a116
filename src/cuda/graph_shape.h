// What a captured CUDA graph holds: its nodes by kind and its dependency edges by kind. Every edge
// is a phase boundary the device pays for in the graph's replay: a programmatic one (PDL, pdl.cuh)
// ≈ 0.56 µs between two full-grid kernels on an H200, a full one ≈ 0.9 µs (bench/sync_bench.cu,
// docs/PERF.md session 42), so the decode step's shape bounds its synchronisation from below.
#pragma once

#include <cuda_runtime_api.h>

#include "util/status.h"

namespace dsv4::cuda {

struct GraphShape {
  int kernels = 0;
  int copies = 0;  // memcpy and memset nodes
  int other = 0;   // event, host, child-graph and empty nodes
  int edges = 0;
  int programmatic_edges = 0;  // of edges: a PDL launch's dependency on the kernel before it
};

Result<GraphShape> graph_shape(cudaGraph_t graph);

}  // namespace dsv4::cuda
