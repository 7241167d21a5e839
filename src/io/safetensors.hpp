// safetensors (https://huggingface.co/docs/safetensors): 8-byte little-endian header length N, N bytes of JSON
// {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ..., "__metadata__": {str: str}},
// then the data buffer; offsets are relative to the buffer's start. Loadable by Python's safetensors / PyTorch.
//
// The reader checks every length against the bytes actually present and throws InputError naming the file and
// what is wrong (header length past the end, bad JSON, unknown dtype, offsets out of range or overlapping,
// shape product disagreeing with the byte count).
#pragma once
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace stretch {

enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL };
const char* dtype_name(DType d);
std::size_t dtype_size(DType d);

struct TensorEntry {
  std::string name;
  DType dtype;
  std::vector<std::int64_t> shape;
  std::size_t begin = 0, end = 0;  // byte range within the data buffer
  std::int64_t numel() const;
};

class SafetensorsReader {
 public:
  // Reads and validates the whole file (throws InputError).
  static SafetensorsReader open(const std::filesystem::path& path);
  // Parses from memory; `source` names the origin in error messages.
  static SafetensorsReader parse(std::string bytes, const std::string& source);

  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::vector<TensorEntry>& tensors() const { return tensors_; }  // in file order
  bool has(const std::string& name) const;
  const TensorEntry& entry(const std::string& name) const;  // throws InputError when absent
  // The tensor's values converted to float (F32, F64, F16, BF16 accepted; throws InputError otherwise).
  std::vector<float> read_f32(const std::string& name) const;
  std::vector<double> read_f64(const std::string& name) const;   // F32 or F64
  std::vector<std::int32_t> read_i32(const std::string& name) const;  // I32 or I64 (range-checked)
  // Copies a float tensor into `dst` after checking its shape equals `shape` (InputError naming the tensor,
  // the expected and the found shape otherwise).
  void read_into(const std::string& name, const std::vector<std::int64_t>& shape, float* dst) const;
  const std::string& source() const { return source_; }

 private:
  std::string source_;
  std::string bytes_;
  std::size_t data_start_ = 0;
  std::map<std::string, std::string> metadata_;
  std::vector<TensorEntry> tensors_;
};

class SafetensorsWriter {
 public:
  void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }
  // Copies the data. Names must be unique (ConfigError otherwise).
  void add(const std::string& name, DType dtype, std::vector<std::int64_t> shape, const void* data);
  void add_f32(const std::string& name, std::vector<std::int64_t> shape, const float* data) {
    add(name, DType::F32, std::move(shape), data);
  }
  std::string serialize() const;
  // Atomic write (temporary file, fsync, rename); IoError on failure.
  void write(const std::filesystem::path& path) const;

 private:
  struct Item {
    std::string name;
    DType dtype;
    std::vector<std::int64_t> shape;
    std::string bytes;
  };
  std::map<std::string, std::string> metadata_;
  std::vector<Item> items_;
};

}  // namespace stretch
