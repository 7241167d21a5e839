// GGUF, version 3 (the ggml / llama.cpp model file; spec: docs/gguf.md in github.com/ggml-org/ggml), little-endian:
//
//   u32 magic 0x46554747 ("GGUF")   u32 version (3)   u64 tensor_count   u64 metadata_kv_count
//   metadata_kv_count x { string key, u32 value type, value }
//   tensor_count x { string name, u32 n_dims (<= 4), n_dims x u64 ne (ne[0] fastest-varying), u32 ggml type,
//                    u64 offset (relative to the data section, a multiple of the alignment) }
//   zero padding to the alignment, then the tensor data section.
//
// A string is a u64 byte length then the bytes (no NUL). Value types: UINT8 0, INT8 1, UINT16 2, INT16 3, UINT32 4,
// INT32 5, FLOAT32 6, BOOL 7 (one byte, 0 or 1), STRING 8, ARRAY 9 (u32 element type, u64 count, elements; arrays of
// arrays allowed), UINT64 10, INT64 11, FLOAT64 12. The alignment is the UINT32 metadata "general.alignment" when
// present (a power of two), else 32.
//
// Tensor types handled here (numbers of ggml's enum ggml_type): F32 0, F16 1, Q8_0 8 (blocks of 32 values: an f16
// scale d then 32 int8 q, value = d * q, 34 bytes per block; ne[0] must be a multiple of 32), BF16 30. Other ggml
// types are recognised by name in messages and rejected.
//
// Shapes: GGUF's ne is reversed with respect to PyTorch (row-major) shapes: a PyTorch (out, in) weight has
// ne = [in, out]. GgufTensorInfo carries both.
//
// The reader maps the file (core/mapped_file.hpp: only the pages read become resident; release(name) drops a
// tensor's pages after its conversion) and checks every count, length, offset and size against the bytes actually
// present (with overflow checks) before anything is used; a malformed file is an InputError naming the source, the
// byte offset and what was expected. Version 2 files (same little-endian layout) are accepted too; big-endian
// files are rejected.
#pragma once
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/mapped_file.hpp"

namespace stretch {

enum class GgufValueType : std::uint32_t {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
};
const char* gguf_value_type_name(GgufValueType t);  // "UINT8", ..., "FLOAT64"; "?" for others

// ggml tensor type numbers (ggml.h enum ggml_type, gguf-py GGMLQuantizationType).
namespace ggml_type {
inline constexpr std::uint32_t F32 = 0;
inline constexpr std::uint32_t F16 = 1;
inline constexpr std::uint32_t Q8_0 = 8;
inline constexpr std::uint32_t BF16 = 30;
}  // namespace ggml_type
// The ggml name of a type number ("F32", "Q4_K", ...; "type <n>" when unknown).
std::string ggml_type_name(std::uint32_t type);
// Whether this io layer reads and writes the type (F32, F16, Q8_0, BF16).
bool ggml_type_supported(std::uint32_t type);

inline constexpr std::uint32_t kGgufVersion = 3;
inline constexpr std::uint32_t kGgufDefaultAlignment = 32;
inline constexpr std::size_t kGgufMaxDims = 4;
inline constexpr std::int64_t kQ8_0BlockValues = 32;
inline constexpr std::size_t kQ8_0BlockBytes = 34;

// One metadata value. Keeps its GGUF type, so what is read writes back with the same types.
class GgufValue {
 public:
  GgufValue() = default;  // UINT8 0
  static GgufValue u8(std::uint8_t v);
  static GgufValue i8(std::int8_t v);
  static GgufValue u16(std::uint16_t v);
  static GgufValue i16(std::int16_t v);
  static GgufValue u32(std::uint32_t v);
  static GgufValue i32(std::int32_t v);
  static GgufValue u64(std::uint64_t v);
  static GgufValue i64(std::int64_t v);
  static GgufValue f32(float v);
  static GgufValue f64(double v);
  static GgufValue boolean(bool v);
  static GgufValue string(std::string v);
  // Every item must have type `elem_type` (ConfigError otherwise); items of an ARRAY array may differ in their own
  // element types.
  static GgufValue array(GgufValueType elem_type, std::vector<GgufValue> items);
  static GgufValue string_array(const std::vector<std::string>& items);

  GgufValueType type() const { return type_; }
  GgufValueType elem_type() const { return elem_type_; }  // ARRAY only
  bool is_unsigned() const;  // UINT8/16/32/64
  bool is_signed() const;    // INT8/16/32/64
  bool is_float() const;     // FLOAT32/64

  // Accessors; each requires the matching kind of type (ConfigError otherwise; the reader's typed getters check the
  // type first and throw InputError naming the key).
  std::uint64_t as_u64() const;  // unsigned types
  std::int64_t as_i64() const;   // signed types
  double as_f64() const;         // FLOAT32 (exact) / FLOAT64
  float as_f32() const;          // FLOAT32
  bool as_bool() const;
  const std::string& as_string() const;
  const std::vector<GgufValue>& items() const;  // ARRAY

  // A short human-readable rendering ("3", "\"llama\"", "[UINT32 x 4: 1, 2, 3, 4]"; long arrays abbreviated).
  std::string describe() const;
  // "UINT32", or "ARRAY of STRING" / "ARRAY of ARRAY".
  std::string type_name() const;

  friend bool operator==(const GgufValue& a, const GgufValue& b);

 private:
  GgufValueType type_ = GgufValueType::UINT8;
  GgufValueType elem_type_ = GgufValueType::UINT8;
  std::variant<std::uint64_t, std::int64_t, double, bool, std::string, std::vector<GgufValue>> v_{std::uint64_t{0}};
};

struct GgufKV {
  std::string key;
  GgufValue value;
};

struct GgufTensorInfo {
  std::string name;
  std::vector<std::int64_t> shape_rowmajor;  // PyTorch order: the reverse of ne
  std::vector<std::uint64_t> ne;             // GGUF order: ne[0] fastest-varying
  std::uint32_t type = ggml_type::F32;
  std::uint64_t offset = 0;  // within the data section
  std::uint64_t bytes = 0;   // data size (unpadded)
  std::uint64_t numel() const;
};

class GgufReader {
 public:
  // Maps the file and validates it whole (throws InputError naming it).
  static GgufReader open(const std::filesystem::path& path);
  // Parses from memory (the reader keeps `bytes`); `source` names the origin in error messages.
  static GgufReader parse(std::string bytes, std::string source);

  const std::string& source() const { return source_; }
  std::uint32_t version() const { return version_; }
  std::uint64_t alignment() const { return alignment_; }
  std::uint64_t data_offset() const { return data_start_; }  // absolute byte offset of the tensor data section

  // Metadata, in file order.
  const std::vector<GgufKV>& metadata() const { return metadata_; }
  bool has(const std::string& key) const;
  const GgufValue& value(const std::string& key) const;  // InputError naming the key when absent

  // Typed getters: the key must be present with exactly that GGUF type; otherwise InputError naming the source,
  // the key, the expected and the found type.
  std::uint8_t get_u8(const std::string& key) const;
  std::int8_t get_i8(const std::string& key) const;
  std::uint16_t get_u16(const std::string& key) const;
  std::int16_t get_i16(const std::string& key) const;
  std::uint32_t get_u32(const std::string& key) const;
  std::int32_t get_i32(const std::string& key) const;
  std::uint64_t get_u64(const std::string& key) const;
  std::int64_t get_i64(const std::string& key) const;
  float get_f32(const std::string& key) const;
  double get_f64(const std::string& key) const;
  bool get_bool(const std::string& key) const;
  const std::string& get_string(const std::string& key) const;
  std::vector<std::string> get_string_array(const std::string& key) const;  // ARRAY of STRING
  std::vector<float> get_f32_array(const std::string& key) const;           // ARRAY of FLOAT32
  std::vector<std::int32_t> get_i32_array(const std::string& key) const;    // ARRAY of INT32
  // Lenient getters for fields that converters store with varying widths: any integer type whose value is
  // non-negative (get_uint) / fits in int64 (get_int), any float type (get_float). InputError otherwise.
  std::uint64_t get_uint(const std::string& key) const;
  std::int64_t get_int(const std::string& key) const;
  double get_float(const std::string& key) const;

  // Tensors, in file (tensor info) order.
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  bool has_tensor(const std::string& name) const;
  const GgufTensorInfo& tensor(const std::string& name) const;  // InputError when absent
  // The tensor's values as fp32, in row-major order (F32, F16, BF16 converted; Q8_0 dequantized).
  std::vector<float> read_f32(const std::string& name) const;
  // The tensor's stored bytes (valid while the reader lives).
  std::string_view raw(const std::string& name) const;
  // Drops the tensor's bytes from this process's resident memory (whole pages; they stay readable, re-read from
  // the file). For a loader, after the tensor's last read.
  void release(const std::string& name) const;

 private:
  static GgufReader parse_file(MappedFile file, std::string source);
  std::string source_;
  MappedFile file_;
  std::uint32_t version_ = 0;
  std::uint64_t alignment_ = kGgufDefaultAlignment;
  std::uint64_t data_start_ = 0;
  std::vector<GgufKV> metadata_;
  std::map<std::string, std::size_t> key_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, std::size_t> tensor_index_;
};

class GgufWriter {
 public:
  // Sets a metadata value; a key set twice keeps its first position and takes the new value. "general.alignment"
  // must be a UINT32 power of two (ConfigError otherwise) and sets the alignment the data is written with.
  void set(const std::string& key, GgufValue value);
  void set_u32(const std::string& key, std::uint32_t v) { set(key, GgufValue::u32(v)); }
  void set_i32(const std::string& key, std::int32_t v) { set(key, GgufValue::i32(v)); }
  void set_u64(const std::string& key, std::uint64_t v) { set(key, GgufValue::u64(v)); }
  void set_f32(const std::string& key, float v) { set(key, GgufValue::f32(v)); }
  void set_bool(const std::string& key, bool v) { set(key, GgufValue::boolean(v)); }
  void set_string(const std::string& key, std::string v) { set(key, GgufValue::string(std::move(v))); }
  void set_string_array(const std::string& key, const std::vector<std::string>& v) {
    set(key, GgufValue::string_array(v));
  }
  const std::vector<GgufKV>& metadata() const { return metadata_; }

  // Adds a tensor of row-major (PyTorch) shape `shape` (1 to 4 positive dimensions) stored as `type` (F32, F16,
  // BF16 or Q8_0), converting from the fp32 `data`: F16 and BF16 round to nearest even (core/numeric.hpp, where BF16
  // flushes fp32 subnormals to zero); Q8_0 per block of 32 takes
  // d = max|x| / 127 (fp32), q = round-half-away(x * (1/d)), and stores d as f16 (ggml's reference quantizer).
  // Q8_0 needs the last dimension a multiple of 32. ConfigError on a bad name (empty, duplicate), shape or type.
  void add_tensor(const std::string& name, const std::vector<std::int64_t>& shape, std::uint32_t type,
                  const float* data);
  // Adds already-encoded bytes (their size must match the shape and type).
  void add_tensor_bytes(const std::string& name, const std::vector<std::int64_t>& shape, std::uint32_t type,
                        std::string bytes);

  std::uint64_t alignment() const { return alignment_; }
  std::string serialize() const;
  // Atomic write (temporary file, fsync, rename); IoError on failure.
  void write(const std::filesystem::path& path) const;

 private:
  struct Item {
    std::string name;
    std::vector<std::int64_t> shape;
    std::uint32_t type;
    std::string bytes;
  };
  std::vector<GgufKV> metadata_;
  std::vector<Item> items_;
  std::uint64_t alignment_ = kGgufDefaultAlignment;
};

// F16 and BF16 elements are converted by core/numeric.hpp (half_to_float, float_to_half, bf16_to_float,
// float_to_bf16). Encodes n values (n a multiple of 32) as Q8_0 blocks into out (n / 32 * 34 bytes).
void gguf_quantize_q8_0(const float* x, std::size_t n, char* out);

}  // namespace stretch
