// Timing events on a GPU's current stream (torch.cuda.Event(enable_timing=True)), which
// tch does not expose: the training step times its parts on the device without waiting
// for it. c10's device-generic Event, so that the shim compiles against CPU-only headers;
// without CUDA, recording returns null.
#include <c10/core/Event.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>

#include <memory>

extern "C" {

// A timing event recorded now on cuda:`index`'s current stream; null on failure.
void* segzoo_cuda_event_record(int index) {
  try {
    const c10::Device device(c10::DeviceType::CUDA, static_cast<c10::DeviceIndex>(index));
    const auto* impl = c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA);
    auto event = std::make_unique<c10::Event>(c10::DeviceType::CUDA, c10::EventFlag::BACKEND_DEFAULT);
    event->record(impl->getStream(device));
    return event.release();
  } catch (...) {
    return nullptr;
  }
}

// Milliseconds from `start` to `end` on the device, waiting for `end` to complete;
// negative on failure.
double segzoo_cuda_event_elapsed_ms(void* start, void* end) {
  try {
    auto* last = static_cast<c10::Event*>(end);
    last->synchronize();
    return static_cast<c10::Event*>(start)->elapsedTime(*last);
  } catch (...) {
    return -1.0;
  }
}

void segzoo_cuda_event_free(void* event) {
  delete static_cast<c10::Event*>(event);
}
}
