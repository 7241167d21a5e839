// GGUF reader and writer (see gguf.hpp for the layout).
//
// Reader: the file is mapped (core/mapped_file.hpp; or held, from parse()) and walked with a bounds-checked cursor;
// every count is checked against the bytes left (each item needs a known minimum size) before anything is
// allocated, every size is computed with overflow checks, and all tensor ranges are validated (inside the file,
// aligned, disjoint) at parse time, so a truncated or corrupt file fails in parse() with an InputError naming the
// source and byte offset, never later.
// Writer: metadata in insertion order, tensor infos in insertion order, zero padding to the alignment, then each
// tensor's data padded to the alignment (as gguf-py's GGUFWriter lays files out).
#include "io/gguf.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <numeric>

#include "core/error.hpp"
#include "core/hex.hpp"
#include "core/fs.hpp"
#include "core/numeric.hpp"
#include "core/shape.hpp"

static_assert(std::endian::native == std::endian::little, "GGUF I/O assumes a little-endian host");

namespace stretch {
namespace {

constexpr std::uint32_t kMagic = 0x46554747u;  // "GGUF" read as a little-endian u32
constexpr int kMaxArrayDepth = 32;
constexpr std::uint64_t kMaxNumel = std::uint64_t{1} << 60;  // keeps numel * 4 far from u64 overflow
constexpr const char* kTruncatedHint = " Perhaps an incomplete download or corrupt file?";

struct TypeName {
  std::uint32_t type;
  const char* name;
};
// ggml's enum ggml_type (numbers 4 and 5 were removed types).
constexpr TypeName kGgmlTypes[] = {
    {0, "F32"},      {1, "F16"},     {2, "Q4_0"},    {3, "Q4_1"},    {6, "Q5_0"},   {7, "Q5_1"},   {8, "Q8_0"},
    {9, "Q8_1"},     {10, "Q2_K"},   {11, "Q3_K"},   {12, "Q4_K"},   {13, "Q5_K"},  {14, "Q6_K"},  {15, "Q8_K"},
    {16, "IQ2_XXS"}, {17, "IQ2_XS"}, {18, "IQ3_XXS"}, {19, "IQ1_S"}, {20, "IQ4_NL"}, {21, "IQ3_S"}, {22, "IQ2_S"},
    {23, "IQ4_XS"},  {24, "I8"},     {25, "I16"},    {26, "I32"},    {27, "I64"},   {28, "F64"},   {29, "IQ1_M"},
    {30, "BF16"},    {34, "TQ1_0"},  {35, "TQ2_0"},  {39, "MXFP4"},
};

std::string str(std::uint64_t v) { return std::to_string(v); }

bool valid_value_type(std::uint32_t t) { return t <= static_cast<std::uint32_t>(GgufValueType::FLOAT64); }

// The fewest bytes one value of type t occupies in a file (the payload of an ARRAY value: type + count).
std::uint64_t min_value_bytes(GgufValueType t) {
  switch (t) {
    case GgufValueType::UINT8:
    case GgufValueType::INT8:
    case GgufValueType::BOOL:
      return 1;
    case GgufValueType::UINT16:
    case GgufValueType::INT16:
      return 2;
    case GgufValueType::UINT32:
    case GgufValueType::INT32:
    case GgufValueType::FLOAT32:
      return 4;
    case GgufValueType::UINT64:
    case GgufValueType::INT64:
    case GgufValueType::FLOAT64:
    case GgufValueType::STRING:
      return 8;
    case GgufValueType::ARRAY:
      return 12;
  }
  return 1;
}

// Bytes of `numel` values of a supported type whose row length is ne0 (false when the type is unsupported or a
// Q8_0 row is not whole blocks).
bool tensor_bytes(std::uint32_t type, std::uint64_t numel, std::uint64_t ne0, std::uint64_t* out) {
  switch (type) {
    case ggml_type::F32:
      *out = numel * 4;
      return true;
    case ggml_type::F16:
    case ggml_type::BF16:
      *out = numel * 2;
      return true;
    case ggml_type::Q8_0:
      if (ne0 % kQ8_0BlockValues != 0) return false;
      *out = numel / kQ8_0BlockValues * kQ8_0BlockBytes;
      return true;
    default:
      return false;
  }
}

bool is_power_of_two(std::uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

std::uint64_t align_up(std::uint64_t v, std::uint64_t a) { return (v + a - 1) / a * a; }  // caller checks overflow

template <class T>
T load(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

template <class T>
void put(std::string& out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  out.append(b, sizeof(T));
}

void put_string(std::string& out, const std::string& s) {
  put<std::uint64_t>(out, s.size());
  out += s;
}

// Bounds-checked reading position over the file's bytes.
class Cursor {
 public:
  Cursor(std::string_view bytes, const std::string& source) : b_(bytes), source_(source) {}

  [[noreturn]] void fail(const std::string& what) const { throw InputError(source_ + ": " + what); }
  std::size_t pos() const { return pos_; }
  std::uint64_t left() const { return b_.size() - pos_; }
  std::uint64_t size() const { return b_.size(); }

  // Requires n more bytes for `what` (read at the current offset).
  void need(std::uint64_t n, const std::string& what) const {
    if (n > left())
      fail(what + " at offset " + str(pos_) + " needs " + str(n) + " bytes, but the file ends at " + str(b_.size()) +
           " (" + str(left()) + " bytes left)." + kTruncatedHint);
  }
  template <class T>
  T get(const std::string& what) {
    need(sizeof(T), what);
    T v = load<T>(b_.data() + pos_);
    pos_ += sizeof(T);
    return v;
  }
  std::string get_string(const std::string& what) {
    const std::size_t at = pos_;
    const auto n = get<std::uint64_t>(what + " (string length)");
    if (n > left())
      fail(what + ": string length " + str(n) + " at offset " + str(at) + " runs past the end of the file (" +
           str(left()) + " bytes left after the length field)." + kTruncatedHint);
    std::string s(b_.substr(pos_, static_cast<std::size_t>(n)));
    pos_ += static_cast<std::size_t>(n);
    return s;
  }
  // A count of items that each take at least `min_bytes` must fit in what is left.
  void check_count(std::uint64_t count, std::uint64_t min_bytes, std::size_t at, const std::string& what) const {
    if (count > left() / min_bytes)
      fail(what + " " + str(count) + " at offset " + str(at) + " cannot fit: each takes at least " + str(min_bytes) +
           " bytes and only " + str(left()) + " bytes are left in the file (" + str(b_.size()) + " bytes)." +
           kTruncatedHint);
  }

 private:
  std::string_view b_;
  const std::string& source_;
  std::size_t pos_ = 0;
};

GgufValue read_value(Cursor& c, GgufValueType t, const std::string& key, int depth) {
  const std::string what = "metadata '" + key + "' " + gguf_value_type_name(t) + " value";
  switch (t) {
    case GgufValueType::UINT8:
      return GgufValue::u8(c.get<std::uint8_t>(what));
    case GgufValueType::INT8:
      return GgufValue::i8(c.get<std::int8_t>(what));
    case GgufValueType::UINT16:
      return GgufValue::u16(c.get<std::uint16_t>(what));
    case GgufValueType::INT16:
      return GgufValue::i16(c.get<std::int16_t>(what));
    case GgufValueType::UINT32:
      return GgufValue::u32(c.get<std::uint32_t>(what));
    case GgufValueType::INT32:
      return GgufValue::i32(c.get<std::int32_t>(what));
    case GgufValueType::FLOAT32:
      return GgufValue::f32(c.get<float>(what));
    case GgufValueType::UINT64:
      return GgufValue::u64(c.get<std::uint64_t>(what));
    case GgufValueType::INT64:
      return GgufValue::i64(c.get<std::int64_t>(what));
    case GgufValueType::FLOAT64:
      return GgufValue::f64(c.get<double>(what));
    case GgufValueType::BOOL: {
      const std::size_t at = c.pos();
      const auto v = c.get<std::uint8_t>(what);
      if (v > 1)
        c.fail("metadata '" + key + "': BOOL byte " + str(v) + " at offset " + str(at) + " (expected 0 or 1)");
      return GgufValue::boolean(v != 0);
    }
    case GgufValueType::STRING:
      return GgufValue::string(c.get_string(what));
    case GgufValueType::ARRAY: {
      if (depth >= kMaxArrayDepth)
        c.fail("metadata '" + key + "': arrays nested deeper than " + std::to_string(kMaxArrayDepth) +
               " levels at offset " + str(c.pos()));
      const std::size_t type_at = c.pos();
      const auto et = c.get<std::uint32_t>("metadata '" + key + "' array element type");
      if (!valid_value_type(et))
        c.fail("metadata '" + key + "': unknown array element type " + str(et) + " at offset " + str(type_at) +
               " (expected a GGUF value type 0..12)");
      const auto elem = static_cast<GgufValueType>(et);
      const std::size_t count_at = c.pos();
      const auto count = c.get<std::uint64_t>("metadata '" + key + "' array count");
      c.check_count(count, min_value_bytes(elem),
                    count_at, "metadata '" + key + "': array count (of " + gguf_value_type_name(elem) + ")");
      std::vector<GgufValue> items;
      items.reserve(static_cast<std::size_t>(count));
      for (std::uint64_t i = 0; i < count; ++i) {
        if (elem == GgufValueType::ARRAY) {
          items.push_back(read_value(c, elem, key + "[" + str(i) + "]", depth + 1));
        } else {
          items.push_back(read_value(c, elem, key, depth + 1));
        }
      }
      return GgufValue::array(elem, std::move(items));
    }
  }
  c.fail("metadata '" + key + "': unknown value type");
}

void write_value(std::string& out, const GgufValue& v) {
  switch (v.type()) {
    case GgufValueType::UINT8:
      put<std::uint8_t>(out, static_cast<std::uint8_t>(v.as_u64()));
      return;
    case GgufValueType::INT8:
      put<std::int8_t>(out, static_cast<std::int8_t>(v.as_i64()));
      return;
    case GgufValueType::UINT16:
      put<std::uint16_t>(out, static_cast<std::uint16_t>(v.as_u64()));
      return;
    case GgufValueType::INT16:
      put<std::int16_t>(out, static_cast<std::int16_t>(v.as_i64()));
      return;
    case GgufValueType::UINT32:
      put<std::uint32_t>(out, static_cast<std::uint32_t>(v.as_u64()));
      return;
    case GgufValueType::INT32:
      put<std::int32_t>(out, static_cast<std::int32_t>(v.as_i64()));
      return;
    case GgufValueType::FLOAT32:
      put<float>(out, v.as_f32());
      return;
    case GgufValueType::UINT64:
      put<std::uint64_t>(out, v.as_u64());
      return;
    case GgufValueType::INT64:
      put<std::int64_t>(out, v.as_i64());
      return;
    case GgufValueType::FLOAT64:
      put<double>(out, v.as_f64());
      return;
    case GgufValueType::BOOL:
      put<std::uint8_t>(out, v.as_bool() ? 1 : 0);
      return;
    case GgufValueType::STRING:
      put_string(out, v.as_string());
      return;
    case GgufValueType::ARRAY:
      put<std::uint32_t>(out, static_cast<std::uint32_t>(v.elem_type()));
      put<std::uint64_t>(out, v.items().size());
      for (const auto& x : v.items()) write_value(out, x);
      return;
  }
}

// Validates a row-major shape for the writer; returns ne (reversed) and the numel.
std::vector<std::uint64_t> writer_shape(const std::string& name, const std::vector<std::int64_t>& shape,
                                        std::uint64_t* numel) {
  if (shape.empty() || shape.size() > kGgufMaxDims)
    throw ConfigError("gguf: tensor '" + name + "' has " + std::to_string(shape.size()) +
                      " dimensions (expected 1 to 4)");
  std::uint64_t n = 1;
  std::vector<std::uint64_t> ne;
  for (auto it = shape.rbegin(); it != shape.rend(); ++it) {
    if (*it <= 0)
      throw ConfigError("gguf: tensor '" + name + "' has shape " + shape_str(shape) +
                        " (expected positive dimensions)");
    const auto u = static_cast<std::uint64_t>(*it);
    if (n > kMaxNumel / u) throw ConfigError("gguf: tensor '" + name + "' shape " + shape_str(shape) + " is too large");
    n *= u;
    ne.push_back(u);
  }
  *numel = n;
  return ne;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------- names

const char* gguf_value_type_name(GgufValueType t) {
  static const char* const kNames[] = {"UINT8", "INT8",   "UINT16", "INT16", "UINT32", "INT32",  "FLOAT32",
                                       "BOOL",  "STRING", "ARRAY",  "UINT64", "INT64", "FLOAT64"};
  const auto i = static_cast<std::uint32_t>(t);
  return i < 13 ? kNames[i] : "?";
}

std::string ggml_type_name(std::uint32_t type) {
  for (const auto& t : kGgmlTypes)
    if (t.type == type) return t.name;
  return "type " + std::to_string(type);
}

bool ggml_type_supported(std::uint32_t type) {
  return type == ggml_type::F32 || type == ggml_type::F16 || type == ggml_type::Q8_0 || type == ggml_type::BF16;
}

std::uint64_t GgufTensorInfo::numel() const {
  std::uint64_t n = 1;
  for (auto d : ne) n *= d;
  return n;
}

// ---------------------------------------------------------------------------------------------------- conversions

void gguf_quantize_q8_0(const float* x, std::size_t n, char* out) {
  for (std::size_t b = 0; b < n / kQ8_0BlockValues; ++b) {
    const float* v = x + b * kQ8_0BlockValues;
    char* o = out + b * kQ8_0BlockBytes;
    float amax = 0.0f;
    for (std::int64_t i = 0; i < kQ8_0BlockValues; ++i) amax = std::max(amax, std::fabs(v[i]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const f16_t dh = float_to_half(d);
    std::memcpy(o, &dh, 2);
    for (std::int64_t i = 0; i < kQ8_0BlockValues; ++i) {
      const float q = std::round(v[i] * id);  // half away from zero, |q| <= 127
      o[2 + i] = static_cast<char>(static_cast<std::int8_t>(std::clamp(q, -127.0f, 127.0f)));
    }
  }
}

// ---------------------------------------------------------------------------------------------------- values

GgufValue GgufValue::u8(std::uint8_t v) {
  GgufValue r;
  r.type_ = GgufValueType::UINT8;
  r.v_ = std::uint64_t{v};
  return r;
}
GgufValue GgufValue::u16(std::uint16_t v) {
  GgufValue r;
  r.type_ = GgufValueType::UINT16;
  r.v_ = std::uint64_t{v};
  return r;
}
GgufValue GgufValue::u32(std::uint32_t v) {
  GgufValue r;
  r.type_ = GgufValueType::UINT32;
  r.v_ = std::uint64_t{v};
  return r;
}
GgufValue GgufValue::u64(std::uint64_t v) {
  GgufValue r;
  r.type_ = GgufValueType::UINT64;
  r.v_ = v;
  return r;
}
GgufValue GgufValue::i8(std::int8_t v) {
  GgufValue r;
  r.type_ = GgufValueType::INT8;
  r.v_ = std::int64_t{v};
  return r;
}
GgufValue GgufValue::i16(std::int16_t v) {
  GgufValue r;
  r.type_ = GgufValueType::INT16;
  r.v_ = std::int64_t{v};
  return r;
}
GgufValue GgufValue::i32(std::int32_t v) {
  GgufValue r;
  r.type_ = GgufValueType::INT32;
  r.v_ = std::int64_t{v};
  return r;
}
GgufValue GgufValue::i64(std::int64_t v) {
  GgufValue r;
  r.type_ = GgufValueType::INT64;
  r.v_ = v;
  return r;
}
GgufValue GgufValue::f32(float v) {
  GgufValue r;
  r.type_ = GgufValueType::FLOAT32;
  r.v_ = static_cast<double>(v);
  return r;
}
GgufValue GgufValue::f64(double v) {
  GgufValue r;
  r.type_ = GgufValueType::FLOAT64;
  r.v_ = v;
  return r;
}
GgufValue GgufValue::boolean(bool v) {
  GgufValue r;
  r.type_ = GgufValueType::BOOL;
  r.v_ = v;
  return r;
}
GgufValue GgufValue::string(std::string v) {
  GgufValue r;
  r.type_ = GgufValueType::STRING;
  r.v_ = std::move(v);
  return r;
}
GgufValue GgufValue::array(GgufValueType elem_type, std::vector<GgufValue> items) {
  if (!valid_value_type(static_cast<std::uint32_t>(elem_type)))
    throw ConfigError("gguf: invalid array element type " + std::to_string(static_cast<std::uint32_t>(elem_type)));
  for (std::size_t i = 0; i < items.size(); ++i)
    if (items[i].type() != elem_type)
      throw ConfigError(std::string("gguf: array of ") + gguf_value_type_name(elem_type) + " has item " +
                        std::to_string(i) + " of type " + gguf_value_type_name(items[i].type()));
  GgufValue r;
  r.type_ = GgufValueType::ARRAY;
  r.elem_type_ = elem_type;
  r.v_ = std::move(items);
  return r;
}
GgufValue GgufValue::string_array(const std::vector<std::string>& items) {
  std::vector<GgufValue> v;
  v.reserve(items.size());
  for (const auto& s : items) v.push_back(string(s));
  return array(GgufValueType::STRING, std::move(v));
}

bool GgufValue::is_unsigned() const {
  return type_ == GgufValueType::UINT8 || type_ == GgufValueType::UINT16 || type_ == GgufValueType::UINT32 ||
         type_ == GgufValueType::UINT64;
}
bool GgufValue::is_signed() const {
  return type_ == GgufValueType::INT8 || type_ == GgufValueType::INT16 || type_ == GgufValueType::INT32 ||
         type_ == GgufValueType::INT64;
}
bool GgufValue::is_float() const { return type_ == GgufValueType::FLOAT32 || type_ == GgufValueType::FLOAT64; }

namespace {
[[noreturn]] void wrong_kind(const GgufValue& v, const char* wanted) {
  throw ConfigError(std::string("gguf: value of type ") + v.type_name() + " read as " + wanted);
}
}  // namespace

std::uint64_t GgufValue::as_u64() const {
  if (!is_unsigned()) wrong_kind(*this, "an unsigned integer");
  return std::get<std::uint64_t>(v_);
}
std::int64_t GgufValue::as_i64() const {
  if (!is_signed()) wrong_kind(*this, "a signed integer");
  return std::get<std::int64_t>(v_);
}
double GgufValue::as_f64() const {
  if (!is_float()) wrong_kind(*this, "a float");
  return std::get<double>(v_);
}
float GgufValue::as_f32() const {
  if (type_ != GgufValueType::FLOAT32) wrong_kind(*this, "FLOAT32");
  return static_cast<float>(std::get<double>(v_));
}
bool GgufValue::as_bool() const {
  if (type_ != GgufValueType::BOOL) wrong_kind(*this, "BOOL");
  return std::get<bool>(v_);
}
const std::string& GgufValue::as_string() const {
  if (type_ != GgufValueType::STRING) wrong_kind(*this, "STRING");
  return std::get<std::string>(v_);
}
const std::vector<GgufValue>& GgufValue::items() const {
  if (type_ != GgufValueType::ARRAY) wrong_kind(*this, "ARRAY");
  return std::get<std::vector<GgufValue>>(v_);
}

std::string GgufValue::type_name() const {
  if (type_ != GgufValueType::ARRAY) return gguf_value_type_name(type_);
  return std::string("ARRAY of ") + gguf_value_type_name(elem_type_);
}

std::string GgufValue::describe() const {
  switch (type_) {
    case GgufValueType::STRING: {
      const auto& s = std::get<std::string>(v_);
      return "\"" + (s.size() > 60 ? s.substr(0, 57) + "..." : s) + "\"";
    }
    case GgufValueType::BOOL:
      return std::get<bool>(v_) ? "true" : "false";
    case GgufValueType::FLOAT32:
    case GgufValueType::FLOAT64: {
      char b[64];
      std::snprintf(b, sizeof b, "%.9g", std::get<double>(v_));
      return b;
    }
    case GgufValueType::ARRAY: {
      const auto& it = std::get<std::vector<GgufValue>>(v_);
      std::string s = "[" + std::string(gguf_value_type_name(elem_type_)) + " x " + std::to_string(it.size());
      for (std::size_t i = 0; i < it.size() && i < 8; ++i) s += (i ? ", " : ": ") + it[i].describe();
      return s + (it.size() > 8 ? ", ...]" : "]");
    }
    default:
      return is_unsigned() ? std::to_string(std::get<std::uint64_t>(v_)) : std::to_string(std::get<std::int64_t>(v_));
  }
}

bool operator==(const GgufValue& a, const GgufValue& b) {
  if (a.type_ != b.type_) return false;
  if (a.type_ == GgufValueType::ARRAY && a.elem_type_ != b.elem_type_) return false;
  if (a.is_float()) {  // bitwise, so NaN == NaN and -0 != +0 (a round trip keeps bits)
    return std::bit_cast<std::uint64_t>(std::get<double>(a.v_)) == std::bit_cast<std::uint64_t>(std::get<double>(b.v_));
  }
  return a.v_ == b.v_;
}

// ---------------------------------------------------------------------------------------------------- reader

GgufReader GgufReader::open(const std::filesystem::path& path) {
  return parse_file(MappedFile::open(path), path.string());
}

GgufReader GgufReader::parse(std::string bytes, std::string source) {
  return parse_file(MappedFile::hold(std::move(bytes)), std::move(source));
}

GgufReader GgufReader::parse_file(MappedFile file, std::string source) {
  GgufReader r;
  r.source_ = std::move(source);
  const std::string_view bytes = file.bytes();
  Cursor c(bytes, r.source_);
  if (bytes.size() < 4)
    c.fail("file is " + str(bytes.size()) + " bytes, too short for a GGUF file (expected the 4-byte magic 'GGUF', " +
           "a version and two counts)." + kTruncatedHint);
  const auto magic = c.get<std::uint32_t>("magic");
  if (magic != kMagic) {
    std::string seen;
    for (int i = 0; i < 4; ++i) {
      const auto ch = static_cast<unsigned char>(bytes[static_cast<std::size_t>(i)]);
      seen += (ch >= 32 && ch < 127) ? std::string(1, static_cast<char>(ch)) : "\\x" + to_hex(&ch, 1);
    }
    c.fail("bad magic '" + seen + "' at offset 0 (expected 'GGUF'); not a GGUF file");
  }
  r.version_ = c.get<std::uint32_t>("version");
  if (r.version_ != 2 && r.version_ != 3) {
    const std::uint32_t swapped = ((r.version_ & 0xffu) << 24) | ((r.version_ & 0xff00u) << 8) |
                                  ((r.version_ >> 8) & 0xff00u) | (r.version_ >> 24);
    if (swapped == 2 || swapped == 3)
      c.fail("unsupported GGUF version " + str(r.version_) + " at offset 4: a big-endian GGUF file (version " +
             str(swapped) + "); only little-endian files are supported");
    c.fail("unsupported GGUF version " + str(r.version_) + " at offset 4 (supported: 3, and 2 which shares its " +
           "layout; version 1 is obsolete)");
  }
  const std::size_t tcount_at = c.pos();
  const auto tensor_count = c.get<std::uint64_t>("tensor_count");
  const std::size_t kvcount_at = c.pos();
  const auto kv_count = c.get<std::uint64_t>("metadata_kv_count");
  // A KV takes at least 8 (key length) + 4 (type) + 1 bytes; a tensor info at least 8 + 4 + 4 + 8.
  c.check_count(kv_count, 13, kvcount_at, "metadata_kv_count");
  c.check_count(tensor_count, 24, tcount_at, "tensor_count");

  for (std::uint64_t i = 0; i < kv_count; ++i) {
    const std::size_t at = c.pos();
    const std::string entry = "metadata entry " + str(i) + " of " + str(kv_count);
    std::string key = c.get_string(entry + " key");
    if (r.key_index_.count(key))
      c.fail("duplicate metadata key '" + key + "' (" + entry + " at offset " + str(at) + ")");
    const std::size_t type_at = c.pos();
    const auto t = c.get<std::uint32_t>("metadata '" + key + "' value type");
    if (!valid_value_type(t))
      c.fail("metadata '" + key + "': unknown metadata value type " + str(t) + " at offset " + str(type_at) +
             " (expected a GGUF value type 0..12)");
    GgufValue v = read_value(c, static_cast<GgufValueType>(t), key, 0);
    r.key_index_[key] = r.metadata_.size();
    r.metadata_.push_back({std::move(key), std::move(v)});
  }

  if (auto it = r.key_index_.find("general.alignment"); it != r.key_index_.end()) {
    const GgufValue& a = r.metadata_[it->second].value;
    if (a.type() != GgufValueType::UINT32)
      c.fail("metadata 'general.alignment' has type " + a.type_name() + " (expected UINT32)");
    if (!is_power_of_two(a.as_u64()))
      c.fail("metadata 'general.alignment' = " + str(a.as_u64()) + " is not a power of two (expected e.g. 32)");
    r.alignment_ = a.as_u64();
  }

  for (std::uint64_t i = 0; i < tensor_count; ++i) {
    const std::size_t at = c.pos();
    const std::string entry = "tensor info " + str(i) + " of " + str(tensor_count);
    GgufTensorInfo t;
    t.name = c.get_string(entry + " name");
    const std::string what = "tensor '" + t.name + "' (" + entry + " at offset " + str(at) + ")";
    if (r.tensor_index_.count(t.name)) c.fail("duplicate tensor name: " + what);
    const std::size_t dims_at = c.pos();
    const auto n_dims = c.get<std::uint32_t>(what + " n_dims");
    if (n_dims > kGgufMaxDims)
      c.fail(what + ": n_dims " + str(n_dims) + " at offset " + str(dims_at) + " (expected at most " +
             str(kGgufMaxDims) + ")");
    std::uint64_t numel = 1;
    for (std::uint32_t d = 0; d < n_dims; ++d) {
      const std::size_t dim_at = c.pos();
      const auto v = c.get<std::uint64_t>(what + " ne[" + str(d) + "]");
      if (v == 0) c.fail(what + ": ne[" + str(d) + "] is a zero dim at offset " + str(dim_at) + " (expected > 0)");
      if (v > kMaxNumel || numel > kMaxNumel / v)
        c.fail(what + ": dims too large (ne[" + str(d) + "] = " + str(v) + " at offset " + str(dim_at) +
               " makes more than 2^60 elements)");
      numel *= v;
      t.ne.push_back(v);
    }
    for (auto it = t.ne.rbegin(); it != t.ne.rend(); ++it) t.shape_rowmajor.push_back(static_cast<std::int64_t>(*it));
    const std::size_t type_at = c.pos();
    t.type = c.get<std::uint32_t>(what + " type");
    if (!ggml_type_supported(t.type))
      c.fail(what + ": " + (ggml_type_name(t.type).rfind("type ", 0) == 0 ? "unknown" : "unsupported") +
             " tensor type " + ggml_type_name(t.type) + " (" + str(t.type) + ") at offset " + str(type_at) +
             " (supported: F32 0, F16 1, Q8_0 8, BF16 30)");
    const std::uint64_t ne0 = t.ne.empty() ? 1 : t.ne[0];
    if (!tensor_bytes(t.type, numel, ne0, &t.bytes))
      c.fail(what + ": Q8_0 row length ne[0] = " + str(ne0) + " is not a multiple of " + str(kQ8_0BlockValues) +
             " (Q8_0 stores blocks of 32 values)");
    const std::size_t off_at = c.pos();
    t.offset = c.get<std::uint64_t>(what + " offset");
    if (t.offset % r.alignment_ != 0)
      c.fail(what + ": data offset " + str(t.offset) + " at offset " + str(off_at) + " is not a multiple of the " +
             "alignment " + str(r.alignment_));
    r.tensor_index_[t.name] = r.tensors_.size();
    r.tensors_.push_back(std::move(t));
  }

  const std::uint64_t infos_end = c.pos();
  if (infos_end > std::numeric_limits<std::uint64_t>::max() - r.alignment_) c.fail("alignment too large");
  r.data_start_ = align_up(infos_end, r.alignment_);
  const std::uint64_t data_size = r.data_start_ <= bytes.size() ? bytes.size() - r.data_start_ : 0;
  for (const auto& t : r.tensors_) {
    if (t.offset > data_size || t.bytes > data_size - t.offset)
      c.fail("tensor '" + t.name + "' data [" + str(t.offset) + ", " + str(t.offset) + " + " + str(t.bytes) +
             ") runs past the end of the file: the data section starts at offset " + str(r.data_start_) +
             " and holds " + str(data_size) + " bytes (file size " + str(bytes.size()) + ")." + kTruncatedHint);
  }
  std::vector<std::size_t> order(r.tensors_.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return r.tensors_[a].offset < r.tensors_[b].offset; });
  for (std::size_t k = 1; k < order.size(); ++k) {
    const auto& p = r.tensors_[order[k - 1]];
    const auto& q = r.tensors_[order[k]];
    if (q.offset < p.offset + p.bytes)
      c.fail("tensors '" + p.name + "' [" + str(p.offset) + ", " + str(p.offset + p.bytes) + ") and '" + q.name +
             "' [" + str(q.offset) + ", " + str(q.offset + q.bytes) + ") overlap in the data section");
  }
  r.file_ = std::move(file);
  return r;
}

bool GgufReader::has(const std::string& key) const { return key_index_.count(key) != 0; }

const GgufValue& GgufReader::value(const std::string& key) const {
  auto it = key_index_.find(key);
  if (it == key_index_.end()) throw InputError(source_ + ": no metadata key '" + key + "'");
  return metadata_[it->second].value;
}

namespace {
[[noreturn]] void wrong_type(const std::string& source, const std::string& key, const std::string& expected,
                             const GgufValue& v) {
  throw InputError(source + ": metadata '" + key + "' has type " + v.type_name() + ", expected " + expected);
}
const GgufValue& typed(const GgufReader& r, const std::string& key, GgufValueType t) {
  const GgufValue& v = r.value(key);
  if (v.type() != t) wrong_type(r.source(), key, gguf_value_type_name(t), v);
  return v;
}
const std::vector<GgufValue>& typed_array(const GgufReader& r, const std::string& key, GgufValueType elem) {
  const GgufValue& v = r.value(key);
  if (v.type() != GgufValueType::ARRAY || v.elem_type() != elem)
    wrong_type(r.source(), key, std::string("ARRAY of ") + gguf_value_type_name(elem), v);
  return v.items();
}
}  // namespace

std::uint8_t GgufReader::get_u8(const std::string& key) const {
  return static_cast<std::uint8_t>(typed(*this, key, GgufValueType::UINT8).as_u64());
}
std::int8_t GgufReader::get_i8(const std::string& key) const {
  return static_cast<std::int8_t>(typed(*this, key, GgufValueType::INT8).as_i64());
}
std::uint16_t GgufReader::get_u16(const std::string& key) const {
  return static_cast<std::uint16_t>(typed(*this, key, GgufValueType::UINT16).as_u64());
}
std::int16_t GgufReader::get_i16(const std::string& key) const {
  return static_cast<std::int16_t>(typed(*this, key, GgufValueType::INT16).as_i64());
}
std::uint32_t GgufReader::get_u32(const std::string& key) const {
  return static_cast<std::uint32_t>(typed(*this, key, GgufValueType::UINT32).as_u64());
}
std::int32_t GgufReader::get_i32(const std::string& key) const {
  return static_cast<std::int32_t>(typed(*this, key, GgufValueType::INT32).as_i64());
}
std::uint64_t GgufReader::get_u64(const std::string& key) const {
  return typed(*this, key, GgufValueType::UINT64).as_u64();
}
std::int64_t GgufReader::get_i64(const std::string& key) const {
  return typed(*this, key, GgufValueType::INT64).as_i64();
}
float GgufReader::get_f32(const std::string& key) const { return typed(*this, key, GgufValueType::FLOAT32).as_f32(); }
double GgufReader::get_f64(const std::string& key) const {
  return typed(*this, key, GgufValueType::FLOAT64).as_f64();
}
bool GgufReader::get_bool(const std::string& key) const { return typed(*this, key, GgufValueType::BOOL).as_bool(); }
const std::string& GgufReader::get_string(const std::string& key) const {
  return typed(*this, key, GgufValueType::STRING).as_string();
}
std::vector<std::string> GgufReader::get_string_array(const std::string& key) const {
  std::vector<std::string> out;
  for (const auto& v : typed_array(*this, key, GgufValueType::STRING)) out.push_back(v.as_string());
  return out;
}
std::vector<float> GgufReader::get_f32_array(const std::string& key) const {
  std::vector<float> out;
  for (const auto& v : typed_array(*this, key, GgufValueType::FLOAT32)) out.push_back(v.as_f32());
  return out;
}
std::vector<std::int32_t> GgufReader::get_i32_array(const std::string& key) const {
  std::vector<std::int32_t> out;
  for (const auto& v : typed_array(*this, key, GgufValueType::INT32))
    out.push_back(static_cast<std::int32_t>(v.as_i64()));
  return out;
}
std::uint64_t GgufReader::get_uint(const std::string& key) const {
  const GgufValue& v = value(key);
  if (v.is_unsigned()) return v.as_u64();
  if (v.is_signed() && v.as_i64() >= 0) return static_cast<std::uint64_t>(v.as_i64());
  if (v.is_signed())
    throw InputError(source_ + ": metadata '" + key + "' = " + std::to_string(v.as_i64()) +
                     " is negative, expected a non-negative integer");
  wrong_type(source_, key, "an integer type", v);
}
std::int64_t GgufReader::get_int(const std::string& key) const {
  const GgufValue& v = value(key);
  if (v.is_signed()) return v.as_i64();
  if (v.is_unsigned() && v.as_u64() <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
    return static_cast<std::int64_t>(v.as_u64());
  if (v.is_unsigned())
    throw InputError(source_ + ": metadata '" + key + "' = " + std::to_string(v.as_u64()) +
                     " does not fit in a signed 64-bit integer");
  wrong_type(source_, key, "an integer type", v);
}
double GgufReader::get_float(const std::string& key) const {
  const GgufValue& v = value(key);
  if (!v.is_float()) wrong_type(source_, key, "FLOAT32 or FLOAT64", v);
  return v.as_f64();
}

bool GgufReader::has_tensor(const std::string& name) const { return tensor_index_.count(name) != 0; }

const GgufTensorInfo& GgufReader::tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  if (it != tensor_index_.end()) return tensors_[it->second];
  std::string names;
  for (std::size_t i = 0; i < tensors_.size() && i < 8; ++i) names += (i ? ", " : "") + tensors_[i].name;
  if (tensors_.size() > 8) names += ", ...";
  throw InputError(source_ + ": no tensor named '" + name + "' (the file holds " + std::to_string(tensors_.size()) +
                   " tensors" + (names.empty() ? "" : ": " + names) + ")");
}

std::string_view GgufReader::raw(const std::string& name) const {
  const auto& t = tensor(name);
  return file_.bytes().substr(static_cast<std::size_t>(data_start_ + t.offset), static_cast<std::size_t>(t.bytes));
}

void GgufReader::release(const std::string& name) const {
  const auto& t = tensor(name);
  file_.release(static_cast<std::size_t>(data_start_ + t.offset), static_cast<std::size_t>(t.bytes));
}

std::vector<float> GgufReader::read_f32(const std::string& name) const {
  const auto& t = tensor(name);
  const std::string_view b = raw(name);
  const char* p = b.data();
  const std::size_t n = static_cast<std::size_t>(t.numel());
  std::vector<float> out(n);
  switch (t.type) {
    case ggml_type::F32:
      std::memcpy(out.data(), p, n * 4);
      break;
    case ggml_type::F16:
      half_to_float(p, n, out.data());
      break;
    case ggml_type::BF16:
      bf16_to_float(p, n, out.data());
      break;
    case ggml_type::Q8_0:
      for (std::size_t blk = 0; blk < n / kQ8_0BlockValues; ++blk) {
        const char* q = p + blk * kQ8_0BlockBytes;
        const float d = half_to_float(load<f16_t>(q));
        for (std::int64_t i = 0; i < kQ8_0BlockValues; ++i)
          out[blk * kQ8_0BlockValues + static_cast<std::size_t>(i)] =
              d * static_cast<float>(static_cast<std::int8_t>(q[2 + i]));
      }
      break;
    default:  // parse() admits only the types above
      throw InputError(source_ + ": tensor '" + name + "' has unsupported type " + ggml_type_name(t.type));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------- writer

void GgufWriter::set(const std::string& key, GgufValue value) {
  if (key.empty()) throw ConfigError("gguf: empty metadata key");
  if (key == "general.alignment") {
    if (value.type() != GgufValueType::UINT32)
      throw ConfigError("gguf: 'general.alignment' must be UINT32, got " + value.type_name());
    if (!is_power_of_two(value.as_u64()))
      throw ConfigError("gguf: 'general.alignment' = " + std::to_string(value.as_u64()) + " is not a power of two");
    alignment_ = value.as_u64();
  }
  for (auto& kv : metadata_) {
    if (kv.key == key) {
      kv.value = std::move(value);
      return;
    }
  }
  metadata_.push_back({key, std::move(value)});
}

void GgufWriter::add_tensor_bytes(const std::string& name, const std::vector<std::int64_t>& shape, std::uint32_t type,
                                  std::string bytes) {
  if (name.empty()) throw ConfigError("gguf: empty tensor name");
  for (const auto& it : items_)
    if (it.name == name) throw ConfigError("gguf: duplicate tensor name '" + name + "'");
  if (!ggml_type_supported(type))
    throw ConfigError("gguf: tensor '" + name + "': unsupported type " + ggml_type_name(type) +
                      " (expected F32, F16, BF16 or Q8_0)");
  std::uint64_t numel = 0;
  const auto ne = writer_shape(name, shape, &numel);
  std::uint64_t want = 0;
  if (!tensor_bytes(type, numel, ne[0], &want))
    throw ConfigError("gguf: tensor '" + name + "' of shape " + shape_str(shape) +
                      ": Q8_0 needs the last dimension a multiple of 32");
  if (bytes.size() != want)
    throw ConfigError("gguf: tensor '" + name + "' of shape " + shape_str(shape) + " as " + ggml_type_name(type) +
                      " needs " + std::to_string(want) + " bytes, got " + std::to_string(bytes.size()));
  items_.push_back({name, shape, type, std::move(bytes)});
}

void GgufWriter::add_tensor(const std::string& name, const std::vector<std::int64_t>& shape, std::uint32_t type,
                            const float* data) {
  std::uint64_t numel = 0;
  const auto ne = writer_shape(name, shape, &numel);
  if (!data) throw ConfigError("gguf: tensor '" + name + "' has no data");
  const std::size_t n = static_cast<std::size_t>(numel);
  std::string b;
  switch (type) {
    case ggml_type::F32:
      b.assign(reinterpret_cast<const char*>(data), n * 4);
      break;
    case ggml_type::F16:
    case ggml_type::BF16:
      b.resize(n * 2);
      for (std::size_t i = 0; i < n; ++i) {
        const std::uint16_t h = type == ggml_type::F16 ? float_to_half(data[i]) : float_to_bf16(data[i]);
        std::memcpy(b.data() + 2 * i, &h, 2);
      }
      break;
    case ggml_type::Q8_0:
      if (ne[0] % kQ8_0BlockValues != 0)
        throw ConfigError("gguf: tensor '" + name + "' of shape " + shape_str(shape) +
                          ": Q8_0 needs the last dimension a multiple of 32");
      b.resize(n / kQ8_0BlockValues * kQ8_0BlockBytes);
      gguf_quantize_q8_0(data, n, b.data());
      break;
    default:
      break;  // add_tensor_bytes names the type
  }
  add_tensor_bytes(name, shape, type, std::move(b));
}

std::string GgufWriter::serialize() const {
  std::string out;
  put<std::uint32_t>(out, kMagic);
  put<std::uint32_t>(out, kGgufVersion);
  put<std::uint64_t>(out, items_.size());
  put<std::uint64_t>(out, metadata_.size());
  for (const auto& kv : metadata_) {
    put_string(out, kv.key);
    put<std::uint32_t>(out, static_cast<std::uint32_t>(kv.value.type()));
    write_value(out, kv.value);
  }
  std::uint64_t offset = 0;
  for (const auto& it : items_) {
    put_string(out, it.name);
    put<std::uint32_t>(out, static_cast<std::uint32_t>(it.shape.size()));
    for (auto d = it.shape.rbegin(); d != it.shape.rend(); ++d) put<std::uint64_t>(out, static_cast<std::uint64_t>(*d));
    put<std::uint32_t>(out, it.type);
    put<std::uint64_t>(out, offset);
    offset += align_up(it.bytes.size(), alignment_);
  }
  out.resize(static_cast<std::size_t>(align_up(out.size(), alignment_)), '\0');
  for (const auto& it : items_) {
    out += it.bytes;
    out.resize(static_cast<std::size_t>(align_up(out.size(), alignment_)), '\0');
  }
  return out;
}

void GgufWriter::write(const std::filesystem::path& path) const { write_file_atomic(path, serialize()); }

}  // namespace stretch
