// safetensors reader and writer (see safetensors.hpp).
//
// Reader: the file is mapped (or, from parse(), held in memory); every length and offset in the header is checked
// against the bytes actually present before any tensor is touched, so a truncated or corrupt file fails at open()
// with an InputError naming the file, never later with a crash.
// Writer: "__metadata__" first (when not empty), then the tensors in insertion order; the data buffer is packed
// with no holes (as the Python loader requires), and the header JSON is padded with spaces so that the data
// buffer starts at a multiple of 8 bytes. serialize() and write() send the same bytes (stream()).
#include "io/safetensors.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <new>
#include <optional>
#include <nlohmann/json.hpp>
#include <xxhash.h>

#include "core/error.hpp"
#include "core/hex.hpp"
#include "core/numeric.hpp"
#include "core/shape.hpp"

static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes a little-endian host");

namespace stretch {
namespace {

// 16 MiB. Real headers are far smaller (a 70B model's shards: about 100 KB each; a header of 16 MiB would
// list some 100,000 tensors), and the length is checked before any parsing: a larger header is refused in
// microseconds instead of costing gigabytes of JSON nodes first.
constexpr std::uint64_t kMaxHeader = std::uint64_t{16} << 20;
constexpr const char* kTruncatedHint = " Perhaps an incomplete download or corrupt file?";

struct DTypeInfo {
  DType dtype;
  const char* name;
  std::size_t size;
};
constexpr DTypeInfo kDTypes[] = {
    {DType::F64, "F64", 8}, {DType::F32, "F32", 4}, {DType::F16, "F16", 2}, {DType::BF16, "BF16", 2},
    {DType::I64, "I64", 8}, {DType::I32, "I32", 4}, {DType::I16, "I16", 2}, {DType::I8, "I8", 1},
    {DType::U8, "U8", 1},   {DType::BOOL, "BOOL", 1},
};

std::string dtype_list() {
  std::string s;
  for (const auto& d : kDTypes) {
    if (!s.empty()) s += ", ";
    s += d.name;
  }
  return s;
}

bool parse_dtype(const std::string& name, DType* out) {
  for (const auto& d : kDTypes) {
    if (name == d.name) {
      *out = d.dtype;
      return true;
    }
  }
  return false;
}

// numel of a shape, or false on overflow past 2^62 (no real tensor comes near).
bool checked_numel(const std::vector<std::int64_t>& shape, std::uint64_t* out) {
  std::uint64_t n = 1;
  for (std::int64_t d : shape) {
    if (d < 0) return false;
    auto u = static_cast<std::uint64_t>(d);
    if (u != 0 && n > (std::uint64_t{1} << 62) / u) return false;
    n *= u;
  }
  *out = n;
  return true;
}

template <class T>
T load(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// Calls fn(block, k) over `bytes` zero bytes, in blocks of at most 64 KiB (add_zeros tensors have no buffer).
template <class Fn>
void for_zero_blocks(std::size_t bytes, Fn&& fn) {
  static constexpr char kZeros[1 << 16] = {};
  for (std::size_t left = bytes; left > 0;) {
    const std::size_t k = std::min(left, sizeof kZeros);
    fn(kZeros, k);
    left -= k;
  }
}

// An XXH3-64 over bytes given piece by piece.
class Xxh3Stream {
 public:
  Xxh3Stream() : s_(XXH3_createState()) {
    if (!s_) throw std::bad_alloc();
    XXH3_64bits_reset(s_);
  }
  ~Xxh3Stream() { XXH3_freeState(s_); }
  Xxh3Stream(const Xxh3Stream&) = delete;
  Xxh3Stream& operator=(const Xxh3Stream&) = delete;
  void update(const void* p, std::size_t n) { XXH3_64bits_update(s_, p, n); }
  std::uint64_t digest() const { return XXH3_64bits_digest(s_); }

 private:
  XXH3_state_t* s_;
};

// Reads a non-negative JSON integer (rejecting floats, bools and negatives).
bool json_uint(const nlohmann::json& j, std::uint64_t* out) {
  if (j.is_number_unsigned()) {
    *out = j.get<std::uint64_t>();
    return true;
  }
  if (j.is_number_integer()) {
    auto v = j.get<std::int64_t>();
    if (v < 0) return false;
    *out = static_cast<std::uint64_t>(v);
    return true;
  }
  return false;
}

}  // namespace

const char* dtype_name(DType d) {
  for (const auto& x : kDTypes)
    if (x.dtype == d) return x.name;
  return "?";
}

std::size_t dtype_size(DType d) {
  for (const auto& x : kDTypes)
    if (x.dtype == d) return x.size;
  return 0;
}

std::int64_t TensorEntry::numel() const {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

// ---------------------------------------------------------------------------------------------------- reader

SafetensorsReader SafetensorsReader::open(const std::filesystem::path& path) {
  return parse_file(MappedFile::open(path), path.string());
}

SafetensorsReader SafetensorsReader::parse(std::string bytes, const std::string& source) {
  return parse_file(MappedFile::hold(std::move(bytes)), source);
}

SafetensorsReader SafetensorsReader::parse_file(MappedFile file, const std::string& source) {
  auto fail = [&](const std::string& what) -> void { throw InputError(source + ": " + what); };
  SafetensorsReader r;
  r.source_ = source;
  const std::string_view bytes = file.bytes();
  const std::size_t size = bytes.size();
  if (size < 8)
    fail("file is " + std::to_string(size) +
         " bytes, too short for a safetensors file (expected an 8-byte header length, then the JSON header)." +
         kTruncatedHint);
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[static_cast<std::size_t>(i)]);
  if (n > kMaxHeader)
    fail("header length " + std::to_string(n) + " is absurd (expected at most " + std::to_string(kMaxHeader) +
         " bytes); not a safetensors file?");
  if (n > size - 8)
    fail("header length " + std::to_string(n) + " runs past the end of the file (" + std::to_string(size) +
         " bytes, so at most " + std::to_string(size - 8) + " header bytes)." + kTruncatedHint);
  const std::size_t data_start = 8 + static_cast<std::size_t>(n);
  const std::size_t buffer_size = size - data_start;

  nlohmann::ordered_json header;
  try {
    header = nlohmann::ordered_json::parse(bytes.begin() + 8, bytes.begin() + static_cast<std::ptrdiff_t>(data_start));
  } catch (const nlohmann::json::exception& e) {
    fail(std::string("invalid JSON header (expected a JSON object of tensor entries): ") + e.what());
  }
  if (!header.is_object()) fail("JSON header is not an object (expected {\"name\": {\"dtype\": ...}, ...})");

  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& key = it.key();
    const auto& v = it.value();
    if (key == "__metadata__") {
      if (!v.is_object()) fail("\"__metadata__\" is not an object (expected a map of strings to strings)");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string())
          fail("\"__metadata__\" entry '" + m.key() + "' is not a string (expected string values only)");
        r.metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string what = "tensor '" + key + "': ";
    if (!v.is_object()) fail(what + "entry is not an object (expected {\"dtype\", \"shape\", \"data_offsets\"})");
    TensorEntry e;
    e.name = key;
    auto dt = v.find("dtype");
    if (dt == v.end() || !dt->is_string()) fail(what + "missing or non-string \"dtype\"");
    if (!parse_dtype(dt->get<std::string>(), &e.dtype))
      fail(what + "unknown dtype '" + dt->get<std::string>() + "' (expected one of " + dtype_list() + ")");
    auto sh = v.find("shape");
    if (sh == v.end() || !sh->is_array()) fail(what + "missing \"shape\" (expected a list of non-negative integers)");
    for (const auto& d : *sh) {
      std::uint64_t u = 0;
      if (!json_uint(d, &u) || u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        fail(what + "shape " + sh->dump() + " is not a list of non-negative integers");
      e.shape.push_back(static_cast<std::int64_t>(u));
    }
    auto off = v.find("data_offsets");
    std::uint64_t b = 0, en = 0;
    if (off == v.end() || !off->is_array() || off->size() != 2 || !json_uint((*off)[0], &b) ||
        !json_uint((*off)[1], &en))
      fail(what + "\"data_offsets\" " + (off == v.end() ? std::string("missing") : off->dump()) +
           " (expected [begin, end], two non-negative integers)");
    if (b > en) fail(what + "data_offsets [" + std::to_string(b) + ", " + std::to_string(en) + "] has begin > end");
    if (en > buffer_size)
      fail(what + "data_offsets [" + std::to_string(b) + ", " + std::to_string(en) +
           "] run past the end of the data buffer (" + std::to_string(buffer_size) + " bytes)." + kTruncatedHint);
    std::uint64_t numel = 0;
    if (!checked_numel(e.shape, &numel)) fail(what + "shape " + shape_str(e.shape) + " is too large");
    const std::uint64_t want = numel * dtype_size(e.dtype);
    if (want != en - b)
      fail(what + "shape " + shape_str(e.shape) + " of " + dtype_name(e.dtype) + " needs " + std::to_string(want) +
           " bytes but data_offsets [" + std::to_string(b) + ", " + std::to_string(en) + "] hold " +
           std::to_string(en - b));
    e.begin = static_cast<std::size_t>(b);
    e.end = static_cast<std::size_t>(en);
    r.tensors_.push_back(std::move(e));
  }

  // File order = data order; zero-byte tensors keep their header order among equals.
  std::stable_sort(r.tensors_.begin(), r.tensors_.end(),
                   [](const TensorEntry& a, const TensorEntry& b) { return a.begin < b.begin; });
  const TensorEntry* prev = nullptr;
  for (const auto& e : r.tensors_) {
    if (e.begin == e.end) continue;
    if (prev && e.begin < prev->end)
      fail("tensors '" + prev->name + "' [" + std::to_string(prev->begin) + ", " + std::to_string(prev->end) +
           ") and '" + e.name + "' [" + std::to_string(e.begin) + ", " + std::to_string(e.end) +
           ") overlap (expected disjoint data_offsets)");
    prev = &e;
  }
  for (const auto& [k, v] : r.metadata_) {
    if (k.rfind(kChecksumPrefix, 0) != 0) continue;
    const std::string tensor = k.substr(std::string_view(kChecksumPrefix).size());
    const auto e = std::find_if(r.tensors_.begin(), r.tensors_.end(), [&](const TensorEntry& t) { return t.name == tensor; });
    if (e == r.tensors_.end())
      fail("\"__metadata__\" entry '" + k + "' is a checksum of a tensor the file does not hold");
    std::uint64_t h = 0;
    if (!parse_hex64(v, &h))
      fail("\"__metadata__\" entry '" + k + "' is \"" + v + "\" (expected 16 hexadecimal digits, an XXH3-64 checksum)");
    r.checksums_[tensor] = h;
  }
  r.file_ = std::move(file);
  r.data_start_ = data_start;
  return r;
}

std::optional<std::uint64_t> SafetensorsReader::checksum(const std::string& name) const {
  auto it = checksums_.find(name);
  if (it == checksums_.end()) return std::nullopt;
  return it->second;
}

void SafetensorsReader::verify(const TensorEntry& e, std::uint64_t got) const {
  auto it = checksums_.find(e.name);
  if (it == checksums_.end() || it->second == got) return;
  throw InputError(source_ + ": tensor '" + e.name + "': its bytes do not match the checksum stored with them (" +
                   kChecksumPrefix + e.name + " = " + hex64(it->second) + ", the data hashes to " + hex64(got) +
                   "): the file was damaged after it was written; restore it from a copy");
}

void SafetensorsReader::verify(const TensorEntry& e) const {
  if (checksums_.count(e.name)) verify(e, XXH3_64bits(data(e), e.end - e.begin));
}

bool SafetensorsReader::has(const std::string& name) const {
  return std::any_of(tensors_.begin(), tensors_.end(), [&](const TensorEntry& e) { return e.name == name; });
}

const TensorEntry& SafetensorsReader::entry(const std::string& name) const {
  for (const auto& e : tensors_)
    if (e.name == name) return e;
  std::string names;
  for (std::size_t i = 0; i < tensors_.size() && i < 8; ++i) names += (i ? ", " : "") + tensors_[i].name;
  if (tensors_.size() > 8) names += ", ...";
  throw InputError(source_ + ": no tensor named '" + name + "' (the file holds " + std::to_string(tensors_.size()) +
                   " tensors" + (names.empty() ? "" : ": " + names) + ")");
}

namespace {
constexpr std::size_t kReleaseBlock = std::size_t{8} << 20;  // source bytes converted between two releases

void require_float(const std::string& source, const TensorEntry& e) {
  if (e.dtype != DType::F32 && e.dtype != DType::F64 && e.dtype != DType::F16 && e.dtype != DType::BF16)
    throw InputError(source + ": tensor '" + e.name + "' has dtype " + dtype_name(e.dtype) +
                     ", expected a float dtype (F32, F64, F16 or BF16)");
}

// Converts n elements of e's float dtype from p (require_float first).
void convert_to_float(const TensorEntry& e, const char* p, std::size_t n, float* dst) {
  switch (e.dtype) {
    case DType::F32:
      if (n) std::memcpy(dst, p, n * 4);
      return;
    case DType::F64:
      for (std::size_t i = 0; i < n; ++i) dst[i] = static_cast<float>(load<double>(p + 8 * i));
      return;
    case DType::F16:
      half_to_float(p, n, dst);
      return;
    case DType::BF16:
      bf16_to_float(p, n, dst);
      return;
    default:
      return;
  }
}
}  // namespace

std::vector<float> SafetensorsReader::read_f32(const std::string& name) const {
  const auto& e = entry(name);
  std::vector<float> out(static_cast<std::size_t>(e.numel()));
  require_float(source_, e);
  verify(e);
  convert_to_float(e, data(e), out.size(), out.data());
  return out;
}

std::vector<double> SafetensorsReader::read_f64(const std::string& name) const {
  const auto& e = entry(name);
  const std::size_t n = static_cast<std::size_t>(e.numel());
  const char* p = data(e);
  verify(e);
  std::vector<double> out(n);
  if (e.dtype == DType::F64) {
    if (n) std::memcpy(out.data(), p, n * 8);
  } else if (e.dtype == DType::F32) {
    for (std::size_t i = 0; i < n; ++i) out[i] = load<float>(p + 4 * i);
  } else {
    throw InputError(source_ + ": tensor '" + name + "' has dtype " + dtype_name(e.dtype) + ", expected F32 or F64");
  }
  return out;
}

std::vector<std::int32_t> SafetensorsReader::read_i32(const std::string& name) const {
  const auto& e = entry(name);
  const std::size_t n = static_cast<std::size_t>(e.numel());
  const char* p = data(e);
  verify(e);
  std::vector<std::int32_t> out(n);
  if (e.dtype == DType::I32) {
    if (n) std::memcpy(out.data(), p, n * 4);
  } else if (e.dtype == DType::I64) {
    for (std::size_t i = 0; i < n; ++i) {
      auto v = load<std::int64_t>(p + 8 * i);
      if (v < std::numeric_limits<std::int32_t>::min() || v > std::numeric_limits<std::int32_t>::max())
        throw InputError(source_ + ": tensor '" + name + "' element " + std::to_string(i) + " = " + std::to_string(v) +
                         " does not fit in a 32-bit integer");
      out[i] = static_cast<std::int32_t>(v);
    }
  } else {
    throw InputError(source_ + ": tensor '" + name + "' has dtype " + dtype_name(e.dtype) + ", expected I32 or I64");
  }
  return out;
}

void SafetensorsReader::read_into(const std::string& name, const std::vector<std::int64_t>& shape, float* dst,
                                  SourcePages pages) const {
  const auto& e = entry(name);
  if (e.shape != shape)
    throw InputError(source_ + ": tensor '" + name + "' has shape " + shape_str(e.shape) + ", expected " +
                     shape_str(shape));
  require_float(source_, e);
  const std::size_t n = static_cast<std::size_t>(e.numel());
  if (pages == SourcePages::keep) {
    verify(e);
    convert_to_float(e, data(e), n, dst);
    return;
  }
  // the checksum is computed block by block as the bytes are converted, before their pages go
  std::optional<Xxh3Stream> hash;
  if (checksums_.count(e.name)) hash.emplace();
  // in blocks, each block's whole pages released once converted: at most one block of the file is resident
  const std::size_t esize = dtype_size(e.dtype), block = kReleaseBlock / esize, page = MappedFile::page_size();
  const std::size_t begin = data_start_ + e.begin;
  std::size_t released = begin;
  for (std::size_t done = 0; done < n;) {
    const std::size_t k = std::min(block, n - done);
    if (hash) hash->update(data(e) + done * esize, k * esize);
    convert_to_float(e, data(e) + done * esize, k, dst + done);
    done += k;
    const std::size_t end = begin + done * esize;
    const std::size_t upto = done == n ? end : end / page * page;  // a page still being read stays
    if (upto > released) {
      file_.release(released, upto - released);
      released = upto;
    }
  }
  if (hash) verify(e, hash->digest());
}

void SafetensorsReader::release(const std::string& name) const {
  const auto& e = entry(name);
  file_.release(data_start_ + e.begin, e.end - e.begin);
}

// ---------------------------------------------------------------------------------------------------- writer

void SafetensorsWriter::add_item(const std::string& name, DType dtype, std::vector<std::int64_t> shape,
                                 Source source, const void* data) {
  if (name.empty()) throw ConfigError("safetensors: empty tensor name");
  if (name == "__metadata__") throw ConfigError("safetensors: '__metadata__' is reserved and cannot name a tensor");
  for (const auto& it : items_)
    if (it.name == name) throw ConfigError("safetensors: duplicate tensor name '" + name + "'");
  std::uint64_t numel;
  if (!checked_numel(shape, &numel))
    throw ConfigError("safetensors: tensor '" + name + "' has an invalid shape " + shape_str(shape) +
                      " (expected non-negative dimensions)");
  const std::size_t bytes = static_cast<std::size_t>(numel) * dtype_size(dtype);
  if (bytes && !data && source != Source::zeros) throw ConfigError("safetensors: tensor '" + name + "' has no data");
  Item item;
  item.name = name;
  item.dtype = dtype;
  item.shape = std::move(shape);
  item.bytes = bytes;
  item.source = source;
  if (source == Source::ref) item.ref = data;
  if (source == Source::copy && bytes) item.copy.assign(static_cast<const char*>(data), bytes);
  items_.push_back(std::move(item));
}

void SafetensorsWriter::add(const std::string& name, DType dtype, std::vector<std::int64_t> shape, const void* data) {
  add_item(name, dtype, std::move(shape), Source::copy, data);
}

void SafetensorsWriter::add_ref(const std::string& name, DType dtype, std::vector<std::int64_t> shape,
                                const void* data) {
  add_item(name, dtype, std::move(shape), Source::ref, data);
}

void SafetensorsWriter::add_zeros(const std::string& name, DType dtype, std::vector<std::int64_t> shape) {
  add_item(name, dtype, std::move(shape), Source::zeros, nullptr);
}

std::uint64_t SafetensorsWriter::item_checksum(const Item& it) {
  switch (it.source) {
    case Source::copy:
      return XXH3_64bits(it.copy.data(), it.bytes);
    case Source::ref:
      return XXH3_64bits(it.bytes ? it.ref : "", it.bytes);
    case Source::zeros:
      break;
  }
  Xxh3Stream hash;
  for_zero_blocks(it.bytes, [&](const char* p, std::size_t k) { hash.update(p, k); });
  return hash.digest();
}

// The 8-byte little-endian length, then the JSON header padded with spaces to a multiple of 8 bytes.
std::string SafetensorsWriter::header() const {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  std::map<std::string, std::string> metadata = metadata_;
  if (checksums_)
    for (const auto& it : items_) metadata[kChecksumPrefix + it.name] = hex64(item_checksum(it));
  if (!metadata.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    header["__metadata__"] = std::move(m);
  }
  std::size_t offset = 0;
  for (const auto& it : items_) {
    nlohmann::ordered_json e = nlohmann::ordered_json::object();
    e["dtype"] = dtype_name(it.dtype);
    e["shape"] = it.shape;
    e["data_offsets"] = {offset, offset + it.bytes};
    header[it.name] = std::move(e);
    offset += it.bytes;
  }
  std::string json;
  try {
    json = header.dump();
  } catch (const nlohmann::json::exception& e) {
    throw ConfigError(std::string("safetensors: a tensor name or metadata string is not valid UTF-8: ") + e.what());
  }
  json.append((8 - json.size() % 8) % 8, ' ');
  std::string out;
  out.reserve(8 + json.size());
  const std::uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  out += json;
  return out;
}

void SafetensorsWriter::stream(const ByteSink& sink) const {
  const std::string head = header();
  sink(head.data(), head.size());
  for (const auto& it : items_) {
    switch (it.source) {
      case Source::copy:
        if (it.bytes) sink(it.copy.data(), it.bytes);
        break;
      case Source::ref:
        if (it.bytes) sink(it.ref, it.bytes);
        break;
      case Source::zeros:
        for_zero_blocks(it.bytes, sink);
        break;
    }
  }
}

std::string SafetensorsWriter::serialize() const {
  std::string out;
  stream([&](const void* data, std::size_t n) { out.append(static_cast<const char*>(data), n); });
  return out;
}

void SafetensorsWriter::write(const std::filesystem::path& path) const {
  write_file_atomic_streamed(path, [&](const ByteSink& sink) { stream(sink); });
}

}  // namespace stretch
