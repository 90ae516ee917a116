// The current device's SM count and compute capability, asked of the driver once per device: the
// launch planners (gemm(), the matvec plans, the indexer's score grid) need them on every call, and
// a forward chunk makes hundreds of calls.
#pragma once

namespace dsv4::cuda {

struct DeviceInfo {
  int sms = 132;  // H100 / H200, where the driver does not answer
  int major = 0;
};
DeviceInfo device_info();

}  // namespace dsv4::cuda
