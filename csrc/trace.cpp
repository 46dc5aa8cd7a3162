// Records the ATen ops a forward pass runs (libtorch's tracer) and describes the graph as
// JSON for the ONNX exporter and the BatchNorm folding pass (src/deploy/). tch can trace
// into a TorchScript module but gives no access to its graph; the forward itself stays in
// Rust, reached through a callback.
#include <torch/csrc/jit/frontend/tracer.h>
#include <torch/csrc/jit/ir/constants.h>
#include <torch/csrc/jit/ir/ir.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

extern "C" {
// Runs the forward on `inputs` and pushes each output with segzoo_trace_sink_push;
// returns 0 on success.
typedef int (*segzoo_trace_fn)(void* user, at::Tensor* const* inputs, int64_t n, void* sink);
}

namespace {

using torch::jit::Node;
using torch::jit::Value;

void json_string(std::ostringstream& o, const std::string& s) {
  o << '"';
  for (char c : s) {
    if (c == '"' || c == '\\') {
      o << '\\' << c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      o << buf;
    } else {
      o << c;
    }
  }
  o << '"';
}

void json_double(std::ostringstream& o, double d) {
  if (std::isfinite(d)) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.17g", d);
    o << buf;
  } else {
    json_string(o, std::isnan(d) ? "nan" : (d > 0 ? "inf" : "-inf"));
  }
}

// A constant's value; tensors go to `tensors` and are named by index.
void json_constant(std::ostringstream& o, const c10::IValue& v, std::vector<at::Tensor>& tensors) {
  if (v.isNone()) {
    o << "{\"none\":null}";
  } else if (v.isBool()) {
    o << "{\"bool\":" << (v.toBool() ? "true" : "false") << "}";
  } else if (v.isInt()) {
    o << "{\"int\":" << v.toInt() << "}";
  } else if (v.isDouble()) {
    o << "{\"float\":";
    json_double(o, v.toDouble());
    o << "}";
  } else if (v.isIntList()) {
    o << "{\"ints\":[";
    auto l = v.toIntVector();
    for (size_t i = 0; i < l.size(); ++i) o << (i ? "," : "") << l[i];
    o << "]}";
  } else if (v.isDoubleList()) {
    o << "{\"floats\":[";
    auto l = v.toDoubleVector();
    for (size_t i = 0; i < l.size(); ++i) {
      if (i) o << ",";
      json_double(o, l[i]);
    }
    o << "]}";
  } else if (v.isBoolList()) {
    o << "{\"bools\":[";
    auto l = v.toBoolList();
    for (size_t i = 0; i < l.size(); ++i) o << (i ? "," : "") << (l.get(i) ? "true" : "false");
    o << "]}";
  } else if (v.isString()) {
    o << "{\"string\":";
    json_string(o, v.toStringRef());
    o << "}";
  } else if (v.isTensor()) {
    o << "{\"tensor\":" << tensors.size() << "}";
    tensors.push_back(v.toTensor());
  } else if (v.isDevice()) {
    o << "{\"device\":";
    json_string(o, v.toDevice().str());
    o << "}";
  } else {
    o << "{\"other\":";
    json_string(o, v.tagKind());
    o << "}";
  }
}

void json_value(std::ostringstream& o, const Value* v) {
  o << "{\"id\":" << v->unique() << ",\"type\":";
  json_string(o, v->type()->str());
  if (auto t = v->type()->cast<c10::TensorType>()) {
    if (auto sizes = t->sizes().concrete_sizes()) {
      o << ",\"sizes\":[";
      for (size_t i = 0; i < sizes->size(); ++i) o << (i ? "," : "") << (*sizes)[i];
      o << "]";
    }
    if (auto st = t->scalarType()) {
      o << ",\"dtype\":";
      json_string(o, c10::toString(*st));
    }
  }
  o << "}";
}

std::string describe(const torch::jit::Graph& g, std::vector<at::Tensor>& tensors) {
  std::ostringstream o;
  o << "{\"inputs\":[";
  for (size_t i = 0; i < g.inputs().size(); ++i) {
    if (i) o << ",";
    json_value(o, g.inputs()[i]);
  }
  o << "],\"outputs\":[";
  for (size_t i = 0; i < g.outputs().size(); ++i) o << (i ? "," : "") << g.outputs()[i]->unique();
  o << "],\"nodes\":[";
  bool first = true;
  for (const Node* n : g.nodes()) {
    o << (first ? "" : ",") << "{\"kind\":";
    first = false;
    json_string(o, n->kind().toQualString());
    o << ",\"inputs\":[";
    for (size_t i = 0; i < n->inputs().size(); ++i) o << (i ? "," : "") << n->inputs()[i]->unique();
    o << "],\"outputs\":[";
    for (size_t i = 0; i < n->outputs().size(); ++i) {
      if (i) o << ",";
      json_value(o, n->outputs()[i]);
    }
    o << "]";
    if (n->kind() == c10::prim::Constant && n->outputs().size() == 1) {
      if (auto v = torch::jit::toIValue(n->output())) {
        o << ",\"value\":";
        json_constant(o, *v, tensors);
      }
    }
    o << "}";
  }
  o << "]}";
  return o.str();
}

char* copy_string(const std::string& s) {
  char* out = static_cast<char*>(std::malloc(s.size() + 1));
  if (out) std::memcpy(out, s.c_str(), s.size() + 1);
  return out;
}

}  // namespace

extern "C" {

void segzoo_trace_sink_push(void* sink, at::Tensor* t) {
  static_cast<torch::jit::Stack*>(sink)->emplace_back(*t);
}

// Traces `fn` on `inputs` (graph inputs in this order). Returns the graph as JSON
// (malloc'd; free with segzoo_trace_free), or null with the reason in *error (malloc'd).
// Tensor constants baked into the graph come back in *constants (new tensors, owned by
// the caller; the array is malloc'd).
char* segzoo_trace(at::Tensor* const* inputs, int64_t n, segzoo_trace_fn fn, void* user, at::Tensor*** constants,
                   int64_t* n_constants, char** error) {
  *constants = nullptr;
  *n_constants = 0;
  *error = nullptr;
  try {
    torch::jit::Stack stack;
    for (int64_t i = 0; i < n; ++i) stack.emplace_back(*inputs[i]);
    auto traced = [&](torch::jit::Stack in) -> torch::jit::Stack {
      std::vector<at::Tensor> held;
      std::vector<at::Tensor*> ptrs;
      held.reserve(in.size());
      for (auto& v : in) held.push_back(v.toTensor());
      for (auto& t : held) ptrs.push_back(&t);
      torch::jit::Stack out;
      if (fn(user, ptrs.data(), static_cast<int64_t>(ptrs.size()), &out) != 0) {
        throw std::runtime_error("the traced forward failed");
      }
      return out;
    };
    auto result = torch::jit::tracer::trace(
        std::move(stack), traced, [](const at::Tensor&) { return std::string(); }, /*strict=*/false);
    auto graph = result.first->graph;
    torch::jit::EliminateDeadCode(graph);
    std::vector<at::Tensor> tensors;
    std::string json = describe(*graph, tensors);
    if (!tensors.empty()) {
      *constants = static_cast<at::Tensor**>(std::malloc(sizeof(at::Tensor*) * tensors.size()));
      for (size_t i = 0; i < tensors.size(); ++i) (*constants)[i] = new at::Tensor(tensors[i]);
      *n_constants = static_cast<int64_t>(tensors.size());
    }
    return copy_string(json);
  } catch (const std::exception& e) {
    *error = copy_string(e.what());
    return nullptr;
  }
}

void segzoo_trace_free(void* p) { std::free(p); }
}
