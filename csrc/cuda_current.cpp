// The calling thread's current CUDA device (torch.cuda.set_device), which tch does not
// expose. Through c10's device-generic guard interface, so that the shim compiles against
// CPU-only headers; without CUDA it returns false. A rank sets its device once, as soon as
// it is chosen, so that nothing it runs later creates a context on cuda:0 by default.
#include <c10/core/impl/DeviceGuardImplInterface.h>

extern "C" {

bool segzoo_cuda_set_current_device(int index) {
  try {
    const auto* impl = c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA);
    impl->setDevice(c10::Device(c10::DeviceType::CUDA, static_cast<c10::DeviceIndex>(index)));
    return true;
  } catch (...) {
    return false;
  }
}
}
