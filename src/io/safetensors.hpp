// safetensors (https://huggingface.co/docs/safetensors): 8-byte little-endian header length N, N bytes of JSON
// {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ..., "__metadata__": {str: str}},
// then the data buffer; offsets are relative to the buffer's start. Loadable by Python's safetensors / PyTorch.
//
// The reader checks every length against the bytes actually present and throws InputError naming the file and
// what is wrong (header length past the end, bad JSON, unknown dtype, offsets out of range or overlapping,
// shape product disagreeing with the byte count). open() maps the file (core/mapped_file.hpp) instead of reading
// it: only the pages a conversion touches become resident, and release(name) drops a tensor's pages again, so
// converting a file tensor by tensor into float buffers peaks at about the size of those buffers.
//
// Checksums: the writer stores each tensor's XXH3-64 (of its bytes as written) in the metadata, under
// "xxh3_64:<tensor name>" as 16 hexadecimal digits; the reader verifies a tensor's bytes against its entry whenever
// it reads them (read_f32 / read_f64 / read_i32 / read_into: InputError naming the file and the tensor on a
// mismatch). Files without such entries (every other tool's) load as before; other tools ignore the entries.
//
// The writer streams: write() sends the header, then each tensor's bytes straight from where they are, through
// core/fs.hpp's atomic streamed write; no copy of the file is built in memory. A tensor is added as a copy (add),
// by reference (add_ref: the caller keeps the memory alive and unchanged until the last write), or as zeros of a
// shape (add_zeros: no buffer at all).
#pragma once
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/fs.hpp"
#include "core/mapped_file.hpp"

namespace stretch {

// Metadata key prefix of a tensor's checksum (see above).
inline constexpr const char* kChecksumPrefix = "xxh3_64:";

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

// What read_into does with the tensor's source pages once converted.
enum class SourcePages { keep, release };

class SafetensorsReader {
 public:
  // Maps the file and validates its header and every tensor's range (throws InputError naming the file).
  static SafetensorsReader open(const std::filesystem::path& path);
  // Parses from memory (the reader keeps `bytes`); `source` names the origin in error messages.
  static SafetensorsReader parse(std::string bytes, const std::string& source);

  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::vector<TensorEntry>& tensors() const { return tensors_; }  // in file order
  bool has(const std::string& name) const;
  const TensorEntry& entry(const std::string& name) const;  // throws InputError when absent
  // The tensor's values converted to float (F32, F64, F16, BF16 accepted; throws InputError otherwise).
  std::vector<float> read_f32(const std::string& name) const;
  std::vector<double> read_f64(const std::string& name) const;   // F32 or F64
  std::vector<std::int32_t> read_i32(const std::string& name) const;  // I32 or I64 (range-checked)
  // Converts a float tensor into `dst` after checking its shape equals `shape` (InputError naming the tensor,
  // the expected and the found shape otherwise). SourcePages::release drops the tensor's pages from memory as the
  // conversion proceeds (blocks of 8 MiB, see release()), so a loader's peak holds at most one block of the file
  // beyond its destinations, however large the tensor.
  void read_into(const std::string& name, const std::vector<std::int64_t>& shape, float* dst,
                 SourcePages pages = SourcePages::keep) const;
  // Drops the tensor's bytes from this process's resident memory (core/mapped_file.hpp release: whole pages only;
  // nothing for a parsed buffer). The tensor stays readable (re-read from the file).
  void release(const std::string& name) const;
  const std::string& source() const { return source_; }
  // The checksum stored for a tensor, if the file has one.
  std::optional<std::uint64_t> checksum(const std::string& name) const;

 private:
  void verify(const TensorEntry& e) const;                    // hashes the tensor's bytes, compares
  void verify(const TensorEntry& e, std::uint64_t got) const;  // compares a hash computed by the caller
  static SafetensorsReader parse_file(MappedFile file, const std::string& source);
  const char* data(const TensorEntry& e) const { return file_.bytes().data() + data_start_ + e.begin; }
  std::string source_;
  MappedFile file_;
  std::size_t data_start_ = 0;
  std::map<std::string, std::string> metadata_;
  std::vector<TensorEntry> tensors_;
  std::map<std::string, std::uint64_t> checksums_;
};

class SafetensorsWriter {
 public:
  void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }
  // Checksum entries in the metadata (on by default; off reproduces another writer's bytes).
  void set_checksums(bool on) { checksums_ = on; }
  // Copies the data. Names must be unique (ConfigError otherwise); a tensor of zero elements may pass null.
  void add(const std::string& name, DType dtype, std::vector<std::int64_t> shape, const void* data);
  void add_f32(const std::string& name, std::vector<std::int64_t> shape, const float* data) {
    add(name, DType::F32, std::move(shape), data);
  }
  // Keeps a pointer, no copy: `data` must stay valid and unchanged until the last write() / serialize().
  void add_ref(const std::string& name, DType dtype, std::vector<std::int64_t> shape, const void* data);
  void add_f32_ref(const std::string& name, std::vector<std::int64_t> shape, const float* data) {
    add_ref(name, DType::F32, std::move(shape), data);
  }
  // A tensor of `shape` whose bytes are all zero (0.0 for the float dtypes), written without any buffer.
  void add_zeros(const std::string& name, DType dtype, std::vector<std::int64_t> shape);

  // The file's bytes in one string (small files and tests; write() never builds it).
  std::string serialize() const;
  // Sends the file's bytes to `sink` in order: the 8-byte length and header, then each tensor's data.
  void stream(const ByteSink& sink) const;
  // Atomic streamed write (temporary file, fsync, rename); IoError naming the file on failure.
  void write(const std::filesystem::path& path) const;

 private:
  enum class Source { copy, ref, zeros };
  struct Item {
    std::string name;
    DType dtype;
    std::vector<std::int64_t> shape;
    std::size_t bytes = 0;
    Source source = Source::copy;
    const void* ref = nullptr;  // Source::ref
    std::string copy;           // Source::copy
  };
  static std::uint64_t item_checksum(const Item& it);
  void add_item(const std::string& name, DType dtype, std::vector<std::int64_t> shape, Source source,
                const void* data);
  std::string header() const;
  std::map<std::string, std::string> metadata_;
  std::vector<Item> items_;
  bool checksums_ = true;
};

}  // namespace stretch
