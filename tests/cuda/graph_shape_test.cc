// graph_shape (cuda/graph_shape.h) on a captured chain it can be checked against: a plain kernel,
// two PDL kernels after it (launch_pdl: programmatic edges), then a memset (an ordinary edge).
#include <gtest/gtest.h>

#include <cstdlib>

#include "cuda/attention.h"
#include "cuda/check.h"
#include "cuda/cuda_test_util.h"
#include "cuda/fill.h"
#include "cuda/graph_shape.h"

namespace dsv4::cuda::testing {
namespace {

TEST(CudaGraphShape, CountsNodesAndProgrammaticEdges) {
  if (std::getenv("DSV4_NO_PDL")) GTEST_SKIP() << "DSV4_NO_PDL: every launch an ordinary one";
  constexpr int kHd = 64, kWindow = 4;
  DeviceBuffer rows(kHd * 4), ring(kWindow * kHd * 4), pos(4);
  ASSERT_TRUE(rows.ok() && ring.ok() && pos.ok());
  ASSERT_EQ(cudaMemset(pos.get(), 0, 4), cudaSuccess);
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  const Status queued = [&]() -> Status {
    DSV4_TRY(fill_f32(rows.get<float>(), kHd, 1.0f, stream));
    for (int i = 0; i < 2; ++i) {
      DSV4_TRY(store_raw_rows(rows.get<float>(), ring.get<float>(), pos.get<int>(), 1, kWindow, kHd, stream));
    }
    return cuda_status(cudaMemsetAsync(rows.get(), 0, kHd * 4, stream), "memset");
  }();
  cudaGraph_t graph = nullptr;
  ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
  ASSERT_TRUE(queued.ok()) << queued.message();
  const Result<GraphShape> shape = graph_shape(graph);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
  ASSERT_TRUE(shape.ok()) << shape.status().message();
  EXPECT_EQ(shape->kernels, 3);
  EXPECT_EQ(shape->copies, 1);
  EXPECT_EQ(shape->other, 0);
  EXPECT_EQ(shape->edges, 3);
  EXPECT_EQ(shape->programmatic_edges, 2);
}

}  // namespace
}  // namespace dsv4::cuda::testing
