// graph_shape.h.
#include "cuda/graph_shape.h"

#include <vector>

#include "cuda/check.h"

namespace dsv4::cuda {

Result<GraphShape> graph_shape(cudaGraph_t graph) {
  GraphShape shape;
  size_t n_nodes = 0;
  DSV4_CUDA_TRY(cudaGraphGetNodes(graph, nullptr, &n_nodes));
  std::vector<cudaGraphNode_t> nodes(n_nodes);
  if (n_nodes > 0) DSV4_CUDA_TRY(cudaGraphGetNodes(graph, nodes.data(), &n_nodes));
  for (cudaGraphNode_t node : nodes) {
    cudaGraphNodeType type;
    DSV4_CUDA_TRY(cudaGraphNodeGetType(node, &type));
    if (type == cudaGraphNodeTypeKernel) {
      ++shape.kernels;
    } else if (type == cudaGraphNodeTypeMemcpy || type == cudaGraphNodeTypeMemset) {
      ++shape.copies;
    } else {
      ++shape.other;
    }
  }
  size_t n_edges = 0;
  DSV4_CUDA_TRY(cudaGraphGetEdges(graph, nullptr, nullptr, nullptr, &n_edges));
  std::vector<cudaGraphNode_t> from(n_edges), to(n_edges);
  std::vector<cudaGraphEdgeData> data(n_edges);
  if (n_edges > 0) DSV4_CUDA_TRY(cudaGraphGetEdges(graph, from.data(), to.data(), data.data(), &n_edges));
  shape.edges = static_cast<int>(n_edges);
  for (const cudaGraphEdgeData& e : data) shape.programmatic_edges += e.type == cudaGraphDependencyTypeProgrammatic;
  return shape;
}

}  // namespace dsv4::cuda
