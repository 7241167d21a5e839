// GGUF reader/writer tests: round trips of every metadata and tensor type, the written layout checked byte by byte
// against the spec, hand-made broken files for every rejection, every truncation of a valid file, random byte
// flips, and a cross-check with gguf-py (tests/fixtures/gguf/small.{gguf,json}, tools/make_gguf_fixture.py).
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "core/error.hpp"
#include "core/fs.hpp"
#include "core/numeric.hpp"
#include "io/gguf.hpp"
#include "io/io_test_util.hpp"

namespace stretch {
namespace {
using testing::TempDir;
using VT = GgufValueType;

// ------------------------------------------------------------------------------------------- byte builder

struct Bytes {
  std::string b;
  template <class T>
  Bytes& put(T v) {
    char c[sizeof(T)];
    std::memcpy(c, &v, sizeof(T));
    b.append(c, sizeof(T));
    return *this;
  }
  Bytes& u8(std::uint8_t v) { return put(v); }
  Bytes& u32(std::uint32_t v) { return put(v); }
  Bytes& u64(std::uint64_t v) { return put(v); }
  Bytes& str(const std::string& s) {
    u64(s.size());
    b += s;
    return *this;
  }
  Bytes& header(std::uint64_t n_tensors, std::uint64_t n_kv, std::uint32_t version = 3) {
    b += "GGUF";
    return u32(version).u64(n_tensors).u64(n_kv);
  }
  // A tensor info: name, ne (GGUF order), type, offset.
  Bytes& info(const std::string& name, const std::vector<std::uint64_t>& ne, std::uint32_t type, std::uint64_t off) {
    str(name).u32(static_cast<std::uint32_t>(ne.size()));
    for (auto d : ne) u64(d);
    return u32(type).u64(off);
  }
  Bytes& pad(std::size_t a = 32) {
    b.resize((b.size() + a - 1) / a * a, '\0');
    return *this;
  }
  Bytes& zeros(std::size_t n) {
    b.append(n, '\0');
    return *this;
  }
};

template <class T>
T at(const std::string& s, std::size_t off) {
  T v;
  std::memcpy(&v, s.data() + off, sizeof(T));
  return v;
}

// Parsing `bytes` must throw an InputError starting with the source name and containing each needle.
void expect_rejected(const std::string& bytes, std::initializer_list<const char*> needles) {
  try {
    GgufReader::parse(bytes, "broken.gguf");
    ADD_FAILURE() << "expected InputError containing '" << *needles.begin() << "'";
  } catch (const InputError& e) {
    const std::string m = e.what();
    EXPECT_EQ(m.rfind("broken.gguf: ", 0), 0u) << m;
    for (const char* n : needles) EXPECT_NE(m.find(n), std::string::npos) << "missing '" << n << "' in: " << m;
  }
}

template <class F>
void expect_error_with(F&& f, const char* needle) {
  try {
    f();
    ADD_FAILURE() << "expected an error containing '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

std::uint32_t bits(float f) { return std::bit_cast<std::uint32_t>(f); }

// A metadata value of every type, nested arrays included.
std::vector<GgufKV> every_value() {
  std::vector<GgufKV> kv;
  kv.push_back({"t.u8", GgufValue::u8(255)});
  kv.push_back({"t.i8", GgufValue::i8(-128)});
  kv.push_back({"t.u16", GgufValue::u16(65535)});
  kv.push_back({"t.i16", GgufValue::i16(-32768)});
  kv.push_back({"t.u32", GgufValue::u32(4294967295u)});
  kv.push_back({"t.i32", GgufValue::i32(std::numeric_limits<std::int32_t>::min())});
  kv.push_back({"t.u64", GgufValue::u64(std::numeric_limits<std::uint64_t>::max())});
  kv.push_back({"t.i64", GgufValue::i64(std::numeric_limits<std::int64_t>::min())});
  kv.push_back({"t.f32", GgufValue::f32(0.1f)});
  kv.push_back({"t.f64", GgufValue::f64(-1e-300)});
  kv.push_back({"t.bool", GgufValue::boolean(true)});
  kv.push_back({"t.false", GgufValue::boolean(false)});
  kv.push_back({"t.string", GgufValue::string("h\xc3\xa9llo\n")});
  kv.push_back({"t.empty_string", GgufValue::string("")});
  kv.push_back({"t.strings", GgufValue::string_array({"a", "", "<unk>"})});
  kv.push_back({"t.f32s", GgufValue::array(VT::FLOAT32, {GgufValue::f32(1.5f), GgufValue::f32(-0.0f)})});
  kv.push_back({"t.i32s", GgufValue::array(VT::INT32, {GgufValue::i32(-1), GgufValue::i32(7)})});
  kv.push_back({"t.u8s", GgufValue::array(VT::UINT8, {GgufValue::u8(1), GgufValue::u8(2)})});
  kv.push_back({"t.i8s", GgufValue::array(VT::INT8, {GgufValue::i8(-3)})});
  kv.push_back({"t.u16s", GgufValue::array(VT::UINT16, {GgufValue::u16(9)})});
  kv.push_back({"t.i16s", GgufValue::array(VT::INT16, {GgufValue::i16(-9)})});
  kv.push_back({"t.u32s", GgufValue::array(VT::UINT32, {GgufValue::u32(1), GgufValue::u32(2), GgufValue::u32(3)})});
  kv.push_back({"t.u64s", GgufValue::array(VT::UINT64, {GgufValue::u64(1ull << 40)})});
  kv.push_back({"t.i64s", GgufValue::array(VT::INT64, {GgufValue::i64(-(1ll << 40))})});
  kv.push_back({"t.f64s", GgufValue::array(VT::FLOAT64, {GgufValue::f64(2.25)})});
  kv.push_back({"t.bools", GgufValue::array(VT::BOOL, {GgufValue::boolean(false), GgufValue::boolean(true)})});
  kv.push_back({"t.empty", GgufValue::array(VT::UINT32, {})});
  kv.push_back({"t.nested", GgufValue::array(VT::ARRAY, {GgufValue::array(VT::INT32, {GgufValue::i32(1)}),
                                                         GgufValue::string_array({"x", "y"}),
                                                         GgufValue::array(VT::ARRAY, {GgufValue::array(VT::FLOAT32, {})}),
                                                         GgufValue::array(VT::UINT8, {})})});
  return kv;
}

// ------------------------------------------------------------------------------------------- round trips

TEST(GgufMetadata, RoundTripsEveryType) {
  GgufWriter w;
  for (const auto& kv : every_value()) w.set(kv.key, kv.value);
  const auto r = GgufReader::parse(w.serialize(), "mem");
  EXPECT_EQ(r.version(), 3u);
  EXPECT_EQ(r.alignment(), 32u);
  const auto want = every_value();
  ASSERT_EQ(r.metadata().size(), want.size());
  for (std::size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(r.metadata()[i].key, want[i].key);  // file order
    EXPECT_TRUE(r.metadata()[i].value == want[i].value) << want[i].key << ": " << r.metadata()[i].value.describe();
    EXPECT_EQ(r.metadata()[i].value.type(), want[i].value.type());
  }
  // Writing what was read gives the same bytes.
  GgufWriter w2;
  for (const auto& kv : r.metadata()) w2.set(kv.key, kv.value);
  EXPECT_EQ(w2.serialize(), w.serialize());

  EXPECT_EQ(r.get_u8("t.u8"), 255);
  EXPECT_EQ(r.get_i8("t.i8"), -128);
  EXPECT_EQ(r.get_u16("t.u16"), 65535);
  EXPECT_EQ(r.get_i16("t.i16"), -32768);
  EXPECT_EQ(r.get_u32("t.u32"), 4294967295u);
  EXPECT_EQ(r.get_i32("t.i32"), std::numeric_limits<std::int32_t>::min());
  EXPECT_EQ(r.get_u64("t.u64"), std::numeric_limits<std::uint64_t>::max());
  EXPECT_EQ(r.get_i64("t.i64"), std::numeric_limits<std::int64_t>::min());
  EXPECT_EQ(bits(r.get_f32("t.f32")), bits(0.1f));
  EXPECT_EQ(r.get_f64("t.f64"), -1e-300);
  EXPECT_TRUE(r.get_bool("t.bool"));
  EXPECT_FALSE(r.get_bool("t.false"));
  EXPECT_EQ(r.get_string("t.string"), "h\xc3\xa9llo\n");
  EXPECT_EQ(r.get_string_array("t.strings"), (std::vector<std::string>{"a", "", "<unk>"}));
  EXPECT_EQ(r.get_f32_array("t.f32s"), (std::vector<float>{1.5f, -0.0f}));
  EXPECT_EQ(r.get_i32_array("t.i32s"), (std::vector<std::int32_t>{-1, 7}));
  EXPECT_EQ(r.get_uint("t.u8"), 255u);
  EXPECT_EQ(r.get_uint("t.u32"), 4294967295u);
  EXPECT_EQ(r.get_int("t.i16"), -32768);
  EXPECT_EQ(r.get_int("t.u16"), 65535);
  EXPECT_EQ(r.get_float("t.f32"), static_cast<double>(0.1f));
  EXPECT_EQ(r.get_float("t.f64"), -1e-300);
  const auto& nested = r.value("t.nested");
  EXPECT_EQ(nested.type_name(), "ARRAY of ARRAY");
  ASSERT_EQ(nested.items().size(), 4u);
  EXPECT_EQ(nested.items()[1].items()[1].as_string(), "y");
  EXPECT_EQ(nested.items()[2].items()[0].elem_type(), VT::FLOAT32);
  EXPECT_TRUE(r.value("t.empty").items().empty());
  EXPECT_EQ(r.value("t.empty").elem_type(), VT::UINT32);
}

TEST(GgufMetadata, TypedGettersNameKeyAndTypes) {
  GgufWriter w;
  w.set_u32("a.u32", 5);
  w.set_string("a.s", "x");
  w.set_i32("a.neg", -1);
  w.set("a.i32s", GgufValue::array(VT::INT32, {GgufValue::i32(1)}));
  const auto r = GgufReader::parse(w.serialize(), "m.gguf");
  auto expect = [&](auto f, std::initializer_list<const char*> needles) {
    try {
      f();
      ADD_FAILURE() << "expected InputError";
    } catch (const InputError& e) {
      const std::string m = e.what();
      EXPECT_EQ(m.rfind("m.gguf: ", 0), 0u) << m;
      for (const char* n : needles) EXPECT_NE(m.find(n), std::string::npos) << "missing '" << n << "' in: " << m;
    }
  };
  expect([&] { r.get_u64("a.u32"); }, {"'a.u32'", "UINT32", "expected UINT64"});
  expect([&] { r.get_f32("a.s"); }, {"'a.s'", "STRING", "expected FLOAT32"});
  expect([&] { r.get_string("a.u32"); }, {"'a.u32'", "expected STRING"});
  expect([&] { r.get_string_array("a.i32s"); }, {"'a.i32s'", "ARRAY of INT32", "expected ARRAY of STRING"});
  expect([&] { r.get_u32("missing.key"); }, {"no metadata key 'missing.key'"});
  expect([&] { r.get_uint("a.neg"); }, {"'a.neg'", "negative"});
  expect([&] { r.get_float("a.u32"); }, {"'a.u32'", "FLOAT32 or FLOAT64"});
  expect([&] { r.tensor("nope"); }, {"no tensor named 'nope'"});
  EXPECT_TRUE(r.has("a.s"));
  EXPECT_FALSE(r.has("a.t"));
  EXPECT_FALSE(r.has_tensor("nope"));
}

TEST(GgufTensors, RoundTripEachType) {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  std::vector<float> x(3 * 64);
  for (auto& v : x) v = nd(rng);
  x[5] = std::numeric_limits<float>::quiet_NaN();  // F32 only keeps bits, whatever they are
  x[6] = -0.0f;
  x[7] = std::numeric_limits<float>::denorm_min();
  std::vector<float> finite = x;
  finite[5] = 0.75f;

  GgufWriter w;
  w.set_string("general.architecture", "test");
  w.add_tensor("f32", {3, 64}, ggml_type::F32, x.data());
  w.add_tensor("f16", {3, 64}, ggml_type::F16, finite.data());
  w.add_tensor("bf16", {3, 2, 32}, ggml_type::BF16, finite.data());
  w.add_tensor("q8", {3, 64}, ggml_type::Q8_0, finite.data());
  w.add_tensor("vec", {5}, ggml_type::F32, finite.data());
  const auto r = GgufReader::parse(w.serialize(), "mem");
  ASSERT_EQ(r.tensors().size(), 5u);
  EXPECT_EQ(r.tensor("bf16").shape_rowmajor, (std::vector<std::int64_t>{3, 2, 32}));
  EXPECT_EQ(r.tensor("bf16").ne, (std::vector<std::uint64_t>{32, 2, 3}));
  EXPECT_EQ(r.tensor("q8").type, ggml_type::Q8_0);
  EXPECT_EQ(r.tensor("q8").bytes, 6u * 34u);
  EXPECT_EQ(r.tensor("f16").bytes, 192u * 2u);
  EXPECT_EQ(r.tensor("vec").numel(), 5u);

  const auto f32 = r.read_f32("f32");
  ASSERT_EQ(f32.size(), x.size());
  EXPECT_EQ(std::memcmp(f32.data(), x.data(), x.size() * 4), 0);  // bit-exact, NaN and -0 included

  const auto f16 = r.read_f32("f16");
  const auto bf = r.read_f32("bf16");
  for (std::size_t i = 0; i < x.size(); ++i) {
    const float v = finite[i];
    if (std::fabs(v) >= std::ldexp(1.0f, -14)) {
      EXPECT_LE(std::fabs(f16[i] - v), std::fabs(v) * std::ldexp(1.0f, -11)) << i;
    } else {
      EXPECT_LE(std::fabs(f16[i] - v), std::ldexp(1.0f, -25)) << i;
    }
    EXPECT_LE(std::fabs(bf[i] - v), std::fabs(v) * std::ldexp(1.0f, -8) + 1e-38f) << i;  // + bf16 underflow
    EXPECT_EQ(f16[i], half_to_float(float_to_half(v)));  // the conversions themselves: tests/core/test_numeric.cpp
    EXPECT_EQ(bf[i], bf16_to_float(float_to_bf16(v)));
  }
  const auto q8 = r.read_f32("q8");
  for (std::size_t b = 0; b < 6; ++b) {
    float amax = 0;
    for (std::size_t i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(finite[b * 32 + i]));
    const float d = amax / 127.0f;
    for (std::size_t i = 0; i < 32; ++i)
      EXPECT_LE(std::fabs(q8[b * 32 + i] - finite[b * 32 + i]), 0.51f * d + 1e-6f) << b << " " << i;
  }
}

TEST(GgufTensors, HandComputedValues) {
  // F16 / BF16 of a few values, worked out by hand.
  const std::vector<float> v{0.1f, 1.0f + std::ldexp(3.0f, -11), 65519.0f, -3.0e-8f, 1.0e-8f, 2.5f};
  GgufWriter w;
  w.add_tensor("h", {6}, ggml_type::F16, v.data());
  w.add_tensor("b", {6}, ggml_type::BF16, v.data());
  // Q8_0: one block x[i] = i - 16 (amax 16): d = 16/127 = 0.125984..., stored as f16 0.1259765625 (1032 * 2^-13);
  // q = round(x * 127/16): x = -16 -> -127, x = 15 -> round(119.06) = 119, x = 1 -> round(7.94) = 8,
  // x = -12 -> round(-95.25) = -95.
  std::vector<float> q(32);
  for (int i = 0; i < 32; ++i) q[static_cast<std::size_t>(i)] = static_cast<float>(i - 16);
  w.add_tensor("q", {1, 32}, ggml_type::Q8_0, q.data());
  // A zero block: d = 0, all q = 0.
  const std::vector<float> zero(32, 0.0f);
  w.add_tensor("z", {32}, ggml_type::Q8_0, zero.data());
  const auto r = GgufReader::parse(w.serialize(), "mem");
  const auto h = r.read_f32("h");
  EXPECT_EQ(h[0], 0.0999755859375f);
  EXPECT_EQ(h[1], 1.0f + std::ldexp(1.0f, -9));
  EXPECT_EQ(h[2], 65504.0f);
  EXPECT_EQ(h[3], -std::ldexp(1.0f, -24));  // 3e-8 > 2^-25: the smallest subnormal
  EXPECT_EQ(h[4], 0.0f);                    // 1e-8 < 2^-25: zero
  EXPECT_EQ(h[5], 2.5f);
  const auto b = r.read_f32("b");
  EXPECT_EQ(b[0], 0.10009765625f);  // 0x3DCD
  EXPECT_EQ(b[1], 1.0f);            // 1 + 3 * 2^-11 is below bf16's half-ulp 2^-8
  EXPECT_EQ(b[2], 65536.0f);        // 65519 -> 0x4780
  EXPECT_EQ(b[5], 2.5f);
  const std::string_view raw = r.raw("q");
  ASSERT_EQ(raw.size(), 34u);
  EXPECT_EQ(at<std::uint16_t>(std::string(raw), 0), 0x3008);  // f16 of 0.1259765625
  EXPECT_EQ(static_cast<std::int8_t>(raw[2 + 0]), -127);
  EXPECT_EQ(static_cast<std::int8_t>(raw[2 + 31]), 119);
  EXPECT_EQ(static_cast<std::int8_t>(raw[2 + 17]), 8);
  EXPECT_EQ(static_cast<std::int8_t>(raw[2 + 4]), -95);
  EXPECT_EQ(static_cast<std::int8_t>(raw[2 + 16]), 0);
  const auto qd = r.read_f32("q");
  EXPECT_EQ(qd[0], -15.9990234375f);  // -127 * 0.1259765625
  EXPECT_EQ(qd[31], 14.9912109375f);  // 119 * 0.1259765625
  EXPECT_EQ(qd[17], 1.0078125f);      // 8 * 0.1259765625
  EXPECT_EQ(qd[16], 0.0f);
  EXPECT_EQ(r.read_f32("z"), zero);
  EXPECT_EQ(std::string(r.raw("z")), std::string(34, '\0'));
}

// ------------------------------------------------------------------------------------------- layout by hand

TEST(GgufLayout, WrittenFileMatchesTheSpecByteByByte) {
  GgufWriter w;
  w.set_string("general.architecture", "llama");
  w.set_u32("llama.block_count", 2);
  std::vector<float> a(15), b(7), c(64);
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>(i) * 0.5f;
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<float>(i);
  for (std::size_t i = 0; i < c.size(); ++i) c[i] = static_cast<float>(i) - 20.0f;
  w.add_tensor("tok.weight", {3, 5}, ggml_type::F32, a.data());  // 60 bytes -> padded 64
  w.add_tensor("norm", {7}, ggml_type::F16, b.data());           // 14 bytes -> padded 32
  w.add_tensor("out.weight", {2, 32}, ggml_type::Q8_0, c.data());  // 68 bytes -> padded 96
  const std::string f = w.serialize();

  std::size_t p = 0;
  EXPECT_EQ(f.substr(0, 4), "GGUF");
  EXPECT_EQ(at<std::uint32_t>(f, 0), 0x46554747u);
  EXPECT_EQ(at<std::uint32_t>(f, 4), 3u);
  EXPECT_EQ(at<std::uint64_t>(f, 8), 3u);   // tensor_count
  EXPECT_EQ(at<std::uint64_t>(f, 16), 2u);  // metadata_kv_count
  p = 24;
  // First KV: key "general.architecture" (u64 length, bytes), type STRING (8), value "llama".
  EXPECT_EQ(at<std::uint64_t>(f, p), 20u);
  EXPECT_EQ(f.substr(p + 8, 20), "general.architecture");
  p += 28;
  EXPECT_EQ(at<std::uint32_t>(f, p), 8u);
  EXPECT_EQ(at<std::uint64_t>(f, p + 4), 5u);
  EXPECT_EQ(f.substr(p + 12, 5), "llama");
  p += 17;
  // Second KV: UINT32 (4) = 2.
  EXPECT_EQ(at<std::uint64_t>(f, p), 17u);
  EXPECT_EQ(f.substr(p + 8, 17), "llama.block_count");
  p += 25;
  EXPECT_EQ(at<std::uint32_t>(f, p), 4u);
  EXPECT_EQ(at<std::uint32_t>(f, p + 4), 2u);
  p += 8;
  // Tensor infos: name, n_dims, ne (reversed shape), type, offset = sum of the previous padded sizes.
  struct Want {
    const char* name;
    std::vector<std::uint64_t> ne;
    std::uint32_t type;
    std::uint64_t offset, bytes;
  };
  const Want want[] = {{"tok.weight", {5, 3}, 0, 0, 60}, {"norm", {7}, 1, 64, 14}, {"out.weight", {32, 2}, 8, 96, 68}};
  std::uint64_t expect_offset = 0;
  for (const auto& t : want) {
    const std::size_t n = std::strlen(t.name);
    EXPECT_EQ(at<std::uint64_t>(f, p), n);
    EXPECT_EQ(f.substr(p + 8, n), t.name);
    p += 8 + n;
    EXPECT_EQ(at<std::uint32_t>(f, p), t.ne.size());
    p += 4;
    for (auto d : t.ne) {
      EXPECT_EQ(at<std::uint64_t>(f, p), d);
      p += 8;
    }
    EXPECT_EQ(at<std::uint32_t>(f, p), t.type);
    EXPECT_EQ(at<std::uint64_t>(f, p + 4), t.offset);
    EXPECT_EQ(t.offset, expect_offset);
    EXPECT_EQ(t.offset % 32, 0u);
    expect_offset += (t.bytes + 31) / 32 * 32;
    p += 12;
  }
  // Zero padding up to the data section, which starts aligned.
  const std::size_t data = (p + 31) / 32 * 32;
  EXPECT_EQ(f.substr(p, data - p), std::string(data - p, '\0'));
  EXPECT_EQ(f.size(), data + expect_offset);
  EXPECT_EQ(std::memcmp(f.data() + data, a.data(), 60), 0);
  EXPECT_EQ(f.substr(data + 60, 4), std::string(4, '\0'));
  EXPECT_EQ(at<std::uint16_t>(f, data + 64 + 2 * 3), 0x4200);  // f16 of 3.0
  EXPECT_EQ(at<std::uint16_t>(f, data + 96), float_to_half(20.0f / 127.0f));  // Q8_0 block 0: d = 20/127

  const auto r = GgufReader::parse(f, "mem");
  EXPECT_EQ(r.data_offset(), data);
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(r.tensors()[i].name, want[i].name);
    EXPECT_EQ(r.tensors()[i].offset, want[i].offset);
    EXPECT_EQ(r.tensors()[i].bytes, want[i].bytes);
    EXPECT_EQ(r.raw(want[i].name), std::string_view(f).substr(data + want[i].offset, want[i].bytes));
  }
}

TEST(GgufLayout, HonoursACustomAlignment) {
  GgufWriter w;
  w.set_u32("general.alignment", 64);
  EXPECT_EQ(w.alignment(), 64u);
  const std::vector<float> v(10, 1.0f);
  w.add_tensor("a", {10}, ggml_type::F32, v.data());
  w.add_tensor("b", {2, 5}, ggml_type::F32, v.data());
  const std::string f = w.serialize();
  const auto r = GgufReader::parse(f, "mem");
  EXPECT_EQ(r.alignment(), 64u);
  EXPECT_EQ(r.get_u32("general.alignment"), 64u);
  EXPECT_EQ(r.data_offset() % 64, 0u);
  EXPECT_EQ(r.tensor("b").offset, 64u);
  EXPECT_EQ(f.size() % 64, 0u);
  EXPECT_EQ(r.read_f32("b"), v);
  // The same file with alignment 8 is smaller and still aligned.
  GgufWriter w8;
  w8.set_u32("general.alignment", 8);
  w8.add_tensor("a", {10}, ggml_type::F32, v.data());
  w8.add_tensor("b", {2, 5}, ggml_type::F32, v.data());
  const auto r8 = GgufReader::parse(w8.serialize(), "mem");
  EXPECT_EQ(r8.tensor("b").offset, 40u);
  EXPECT_EQ(r8.data_offset() % 8, 0u);
}

TEST(GgufLayout, WritesAndOpensFiles) {
  TempDir dir;
  GgufWriter w;
  w.set_string("general.name", "x");
  const std::vector<float> v{1, 2, 3, 4};
  w.add_tensor("t", {2, 2}, ggml_type::BF16, v.data());
  w.write(dir / "m.gguf");
  const auto r = GgufReader::open(dir / "m.gguf");
  EXPECT_EQ(r.source(), (dir / "m.gguf").string());
  EXPECT_EQ(r.read_f32("t"), v);
  EXPECT_THROW(GgufReader::open(dir / "missing.gguf"), InputError);
}

TEST(GgufWriter, RejectsBadArguments) {
  const std::vector<float> v(64, 1.0f);
  GgufWriter w;
  w.add_tensor("t", {64}, ggml_type::F32, v.data());
  expect_error_with([&] { w.add_tensor("t", {64}, ggml_type::F32, v.data()); }, "duplicate tensor name 't'");
  expect_error_with([&] { w.add_tensor("q", {2, 24}, ggml_type::Q8_0, v.data()); }, "multiple of 32");
  expect_error_with([&] { w.add_tensor("s", {1, 1, 1, 1, 1}, ggml_type::F32, v.data()); }, "5 dimensions");
  expect_error_with([&] { w.add_tensor("s", {}, ggml_type::F32, v.data()); }, "0 dimensions");
  expect_error_with([&] { w.add_tensor("s", {4, 0}, ggml_type::F32, v.data()); }, "positive dimensions");
  expect_error_with([&] { w.add_tensor("s", {4}, 12, v.data()); }, "unsupported type Q4_K");
  expect_error_with([&] { w.add_tensor("", {4}, ggml_type::F32, v.data()); }, "empty tensor name");
  expect_error_with([&] { w.add_tensor_bytes("b", {4}, ggml_type::F32, std::string(15, '\0')); }, "needs 16 bytes");
  expect_error_with([&] { w.set_u32("general.alignment", 48); }, "not a power of two");
  expect_error_with([&] { w.set_u64("general.alignment", 64); }, "must be UINT32");
  expect_error_with([] { GgufValue::array(VT::UINT32, {GgufValue::i32(1)}); }, "item 0 of type INT32");
  expect_error_with([] { GgufValue::u32(1).as_string(); }, "UINT32");
  EXPECT_THROW(w.add_tensor("q", {2, 24}, ggml_type::Q8_0, v.data()), ConfigError);
  // A key set twice keeps its place and takes the new value.
  w.set_u32("k1", 1);
  w.set_u32("k2", 2);
  w.set_string("k1", "one");
  ASSERT_EQ(w.metadata().size(), 2u);
  EXPECT_EQ(w.metadata()[0].key, "k1");
  EXPECT_EQ(w.metadata()[0].value.as_string(), "one");
}

// ------------------------------------------------------------------------------------------- broken files

// A valid file with one F32 tensor of 4 values, for variations.
std::string one_tensor_file(std::uint32_t type = ggml_type::F32, std::vector<std::uint64_t> ne = {4},
                            std::uint64_t offset = 0, std::size_t data_bytes = 16) {
  Bytes b;
  b.header(1, 1).str("general.architecture").u32(8).str("x");
  b.info("w", ne, type, offset).pad().zeros(data_bytes);
  return b.b;
}

TEST(GgufBroken, HeaderErrors) {
  ASSERT_NO_THROW(GgufReader::parse(one_tensor_file(), "ok"));
  expect_rejected("", {"0 bytes", "too short"});
  expect_rejected("GG", {"2 bytes", "too short"});
  std::string f = one_tensor_file();
  f[3] = 'X';
  expect_rejected(f, {"bad magic 'GGUX'", "offset 0", "expected 'GGUF'"});
  expect_rejected(Bytes().header(0, 0, 1).b, {"unsupported GGUF version 1", "supported: 3"});
  expect_rejected(Bytes().header(0, 0, 4).b, {"unsupported GGUF version 4", "supported: 3"});
  expect_rejected(Bytes().header(0, 0, 0x03000000u).b, {"big-endian"});
  expect_rejected(std::string("GGUF\x03\0\0", 7), {"version", "offset 4", "needs 4 bytes"});
  expect_rejected(Bytes().header(0, 0).b.substr(0, 20), {"metadata_kv_count", "offset 16", "needs 8 bytes"});
  // Counts that cannot fit in what is left of the file.
  expect_rejected(Bytes().header(0, 1000).zeros(100).b,
                  {"metadata_kv_count 1000", "offset 16", "cannot fit", "100 bytes are left"});
  expect_rejected(Bytes().header(std::uint64_t{1} << 63, 0).b, {"tensor_count 9223372036854775808", "offset 8"});
  // Version 2 has the same layout and is accepted.
  EXPECT_EQ(GgufReader::parse(Bytes().header(0, 0, 2).b, "v2").version(), 2u);
  EXPECT_EQ(GgufReader::parse(Bytes().header(0, 0).b, "empty").tensors().size(), 0u);
}

TEST(GgufBroken, MetadataErrors) {
  // Key length past the end.
  expect_rejected(Bytes().header(0, 1).u64(1000).b.append("abcdefghij"),
                  {"metadata entry 0 of 1 key", "string length 1000", "offset 24", "runs past the end", "10 bytes left"});
  // String value length past the end.
  expect_rejected(Bytes().header(0, 1).str("k").u32(8).u64(99).b + "ab",
                  {"metadata 'k'", "string length 99", "offset 37", "runs past the end"});
  // Unknown value type.
  expect_rejected(Bytes().header(0, 1).str("k").u32(13).u32(0).b,
                  {"metadata 'k'", "unknown metadata value type 13", "offset 33"});
  // Value cut short.
  expect_rejected(Bytes().header(0, 1).str("k").u32(10).u32(0).b,
                  {"metadata 'k' UINT64 value", "offset 37", "needs 8 bytes", "4 bytes left"});
  // Bool other than 0/1.
  expect_rejected(Bytes().header(0, 1).str("k").u32(7).u8(2).b, {"metadata 'k'", "BOOL byte 2", "offset 37"});
  // Array with an unknown element type, and with a count past the end.
  expect_rejected(Bytes().header(0, 1).str("k").u32(9).u32(77).u64(0).b,
                  {"metadata 'k'", "unknown array element type 77", "offset 37"});
  expect_rejected(Bytes().header(0, 1).str("k").u32(9).u32(4).u64(1000).zeros(40).b,
                  {"metadata 'k'", "array count (of UINT32) 1000", "offset 41", "cannot fit", "40 bytes"});
  expect_rejected(Bytes().header(0, 1).str("k").u32(9).u32(8).u64(std::uint64_t{1} << 61).b,
                  {"array count (of STRING) 2305843009213693952"});
  // A string inside an array running past the end.
  expect_rejected(Bytes().header(0, 1).str("k").u32(9).u32(8).u64(2).str("ab").u64(50).b + "xy",
                  {"metadata 'k'", "string length 50", "runs past the end"});
  // Nested arrays: element type inside the inner array is checked too; absurd nesting is refused.
  expect_rejected(Bytes().header(0, 1).str("k").u32(9).u32(9).u64(1).u32(99).u64(0).b,
                  {"metadata 'k[0]'", "unknown array element type 99"});
  Bytes deep;
  deep.header(0, 1).str("k").u32(9);
  for (int i = 0; i < 40; ++i) deep.u32(9).u64(1);
  deep.u32(4).u64(0);
  expect_rejected(deep.b, {"nested deeper than 32 levels"});
  // Duplicate keys.
  expect_rejected(Bytes().header(0, 2).str("a").u32(4).u32(1).str("a").u32(4).u32(2).b,
                  {"duplicate metadata key 'a'", "metadata entry 1 of 2", "offset 41"});
  // general.alignment: wrong type, not a power of two, zero.
  expect_rejected(Bytes().header(0, 1).str("general.alignment").u32(10).u64(32).b,
                  {"'general.alignment'", "UINT64", "expected UINT32"});
  expect_rejected(Bytes().header(0, 1).str("general.alignment").u32(4).u32(48).b,
                  {"'general.alignment' = 48", "not a power of two"});
  expect_rejected(Bytes().header(0, 1).str("general.alignment").u32(4).u32(0).b, {"= 0", "not a power of two"});
}

TEST(GgufBroken, TensorInfoErrors) {
  // Unknown and unsupported tensor types.
  expect_rejected(one_tensor_file(99), {"tensor 'w'", "unknown tensor type type 99 (99)", "supported: F32 0"});
  expect_rejected(one_tensor_file(12), {"tensor 'w'", "unsupported tensor type Q4_K (12)", "Q8_0 8, BF16 30"});
  expect_rejected(one_tensor_file(2), {"unsupported tensor type Q4_0"});
  // n_dims > 4 and zero dims.
  expect_rejected(one_tensor_file(0, {1, 1, 1, 1, 4}), {"tensor 'w'", "n_dims 5", "at most 4"});
  expect_rejected(one_tensor_file(0, {4, 0}), {"tensor 'w'", "ne[1] is a zero dim"});
  expect_rejected(one_tensor_file(0, {std::uint64_t{1} << 40, std::uint64_t{1} << 40}), {"tensor 'w'", "too large"});
  // Q8_0 row length.
  expect_rejected(one_tensor_file(ggml_type::Q8_0, {48, 2}, 0, 102),
                  {"tensor 'w'", "Q8_0 row length ne[0] = 48", "not a multiple of 32"});
  // Offset not aligned.
  expect_rejected(one_tensor_file(0, {4}, 8, 32), {"tensor 'w'", "data offset 8", "not a multiple of the alignment 32"});
  // Data past the end of the file: too few data bytes, and a huge offset.
  expect_rejected(one_tensor_file(0, {4}, 0, 15),
                  {"tensor 'w' data [0, 0 + 16)", "runs past the end of the file", "holds 15 bytes"});
  expect_rejected(one_tensor_file(0, {4}, std::uint64_t{1} << 63, 16), {"tensor 'w'", "runs past the end"});
  expect_rejected(one_tensor_file(0, {4}, 0, 0).substr(0, 100), {"data section starts at offset 128", "runs past the end"});
  // Tensor info cut short.
  expect_rejected(one_tensor_file().substr(0, 80), {"tensor 'w'", "ne[0]", "offset 78", "needs 8 bytes"});
  // Duplicate tensor names; overlapping tensors.
  {
    Bytes b;
    b.header(2, 0).info("w", {4}, 0, 0).info("w", {4}, 0, 32).pad().zeros(64);
    expect_rejected(b.b, {"duplicate tensor name", "tensor 'w' (tensor info 1 of 2"});
  }
  {
    Bytes b;
    b.header(2, 0).info("a", {16}, 0, 0).info("b", {16}, 0, 64).pad().zeros(128);
    EXPECT_NO_THROW(GgufReader::parse(b.b, "ok"));
    Bytes c;
    c.header(2, 0).info("a", {16}, 0, 64).info("b", {16}, 0, 32).pad().zeros(128);  // b [32, 96) over a [64, 128)
    expect_rejected(c.b, {"tensors 'b' [32, 96) and 'a' [64, 128) overlap"});
  }
  // An alignment from the metadata governs the offsets.
  {
    Bytes b;
    b.header(1, 1).str("general.alignment").u32(4).u32(64).info("w", {4}, 0, 32).pad(64).zeros(64);
    expect_rejected(b.b, {"data offset 32", "alignment 64"});
  }
}

// ------------------------------------------------------------------------------------------- fuzz-ish

std::string small_valid_file() {
  GgufWriter w;
  for (const auto& kv : every_value()) w.set(kv.key, kv.value);
  std::vector<float> v(64);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = std::sin(static_cast<float>(i));
  w.add_tensor("a", {2, 32}, ggml_type::Q8_0, v.data());
  w.add_tensor("b", {3, 3}, ggml_type::F16, v.data());
  w.add_tensor("c", {5}, ggml_type::BF16, v.data());
  w.add_tensor("d", {3}, ggml_type::F32, v.data());
  return w.serialize();
}

TEST(GgufFuzz, EveryTruncationThrowsInputError) {
  const std::string f = small_valid_file();
  const auto r = GgufReader::parse(f, "full");
  std::uint64_t end = 0;  // end of the last tensor's data; the padding after it is not needed
  for (const auto& t : r.tensors()) end = std::max(end, r.data_offset() + t.offset + t.bytes);
  ASSERT_LT(end, f.size());
  for (std::size_t n = 0; n < end; ++n) {
    try {
      GgufReader::parse(f.substr(0, n), "cut.gguf");
      ADD_FAILURE() << "prefix of " << n << " bytes parsed";
    } catch (const InputError& e) {
      EXPECT_EQ(std::string(e.what()).rfind("cut.gguf: ", 0), 0u);
    }
  }
  for (std::size_t n = end; n <= f.size(); ++n) EXPECT_NO_THROW(GgufReader::parse(f.substr(0, n), "ok")) << n;
}

TEST(GgufFuzz, RandomByteFlipsNeverCrash) {
  const std::string f = small_valid_file();
  std::mt19937 rng(1234);
  int rejected = 0, accepted = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    std::string g = f;
    const int flips = 1 + static_cast<int>(rng() % 3);
    for (int k = 0; k < flips; ++k) {
      const std::size_t pos = rng() % g.size();
      g[pos] = static_cast<char>(rng() % 4 == 0 ? 0xff : rng() & 0xff);
    }
    try {
      const auto r = GgufReader::parse(g, "fuzz");
      for (const auto& t : r.tensors()) EXPECT_EQ(r.read_f32(t.name).size(), t.numel());
      ++accepted;
    } catch (const InputError&) {
      ++rejected;
    }
  }
  EXPECT_GT(rejected, 0);
  EXPECT_GT(accepted, 0);
}

// ------------------------------------------------------------------------------------------- gguf-py fixture

const std::string kFixtureDir = STRETCH_SOURCE_DIR "/tests/fixtures/gguf/";

VT type_from_name(const std::string& s) {
  for (std::uint32_t t = 0; t <= 12; ++t)
    if (s == gguf_value_type_name(static_cast<VT>(t))) return static_cast<VT>(t);
  throw std::runtime_error("bad type name " + s);
}

GgufValue value_from_json(VT t, const nlohmann::json& j, VT elem = VT::UINT8, const nlohmann::json* inner = nullptr) {
  switch (t) {
    case VT::UINT8: return GgufValue::u8(j.get<std::uint8_t>());
    case VT::INT8: return GgufValue::i8(j.get<std::int8_t>());
    case VT::UINT16: return GgufValue::u16(j.get<std::uint16_t>());
    case VT::INT16: return GgufValue::i16(j.get<std::int16_t>());
    case VT::UINT32: return GgufValue::u32(j.get<std::uint32_t>());
    case VT::INT32: return GgufValue::i32(j.get<std::int32_t>());
    case VT::UINT64: return GgufValue::u64(j.get<std::uint64_t>());
    case VT::INT64: return GgufValue::i64(j.get<std::int64_t>());
    case VT::FLOAT32: return GgufValue::f32(static_cast<float>(j.get<double>()));
    case VT::FLOAT64: return GgufValue::f64(j.get<double>());
    case VT::BOOL: return GgufValue::boolean(j.get<bool>());
    case VT::STRING: return GgufValue::string(j.get<std::string>());
    case VT::ARRAY: {
      std::vector<GgufValue> items;
      for (std::size_t i = 0; i < j.size(); ++i) {
        if (elem == VT::ARRAY) {
          items.push_back(value_from_json(VT::ARRAY, j[i], type_from_name((*inner)[i].get<std::string>())));
        } else {
          items.push_back(value_from_json(elem, j[i]));
        }
      }
      return GgufValue::array(elem, std::move(items));
    }
  }
  throw std::runtime_error("bad type");
}

std::vector<float> floats(const nlohmann::json& j) {
  std::vector<float> v;
  for (const auto& x : j) v.push_back(static_cast<float>(x.get<double>()));
  return v;
}

std::string unhex(const std::string& h) {
  std::string out;
  for (std::size_t i = 0; i + 1 < h.size(); i += 2) out.push_back(static_cast<char>(std::stoi(h.substr(i, 2), nullptr, 16)));
  return out;
}

TEST(GgufFixture, ReadsWhatGgufPyWrote) {
  const auto side = nlohmann::json::parse(read_file(kFixtureDir + "small.json"));
  const std::string file = read_file(kFixtureDir + "small.gguf");
  EXPECT_LT(file.size(), 20000u);
  const auto r = GgufReader::open(kFixtureDir + "small.gguf");
  EXPECT_EQ(r.version(), side["version"].get<std::uint32_t>());
  EXPECT_EQ(r.alignment(), side["alignment"].get<std::uint64_t>());
  EXPECT_EQ(r.data_offset(), side["data_offset"].get<std::uint64_t>());
  EXPECT_EQ(file.size(), side["file_bytes"].get<std::size_t>());

  const auto& meta = side["metadata"];
  ASSERT_EQ(r.metadata().size(), meta.size());
  for (std::size_t i = 0; i < meta.size(); ++i) {
    const auto& m = meta[i];
    const auto& kv = r.metadata()[i];
    EXPECT_EQ(kv.key, m["key"].get<std::string>());
    const VT t = type_from_name(m["type"]);
    EXPECT_EQ(kv.value.type(), t) << kv.key;
    const VT elem = m.contains("elem_type") ? type_from_name(m["elem_type"]) : VT::UINT8;
    const GgufValue want =
        value_from_json(t, m["value"], elem, m.contains("inner_elem_types") ? &m["inner_elem_types"] : nullptr);
    EXPECT_TRUE(kv.value == want) << kv.key << ": " << kv.value.describe() << " vs " << want.describe();
  }
  EXPECT_EQ(r.get_string("general.architecture"), "stretchtest");
  EXPECT_EQ(r.get_u64("test.u64"), 9223372036854775813ull);
  EXPECT_EQ(r.get_string_array("test.strings"),
            (std::vector<std::string>{"alpha", "", "\xce\xb3" "amma", "<s>"}));
  EXPECT_EQ(r.get_u32("stretchtest.context_length"), 256u);

  const auto& ts = side["tensors"];
  ASSERT_EQ(r.tensors().size(), ts.size());
  std::set<std::uint32_t> types;
  for (std::size_t i = 0; i < ts.size(); ++i) {
    const auto& t = ts[i];
    const auto& info = r.tensors()[i];
    const std::string name = t["name"];
    SCOPED_TRACE(name);
    EXPECT_EQ(info.name, name);
    EXPECT_EQ(info.type, t["type"].get<std::uint32_t>());
    EXPECT_EQ(ggml_type_name(info.type), t["type_name"].get<std::string>());
    EXPECT_EQ(info.ne, t["ne"].get<std::vector<std::uint64_t>>());
    EXPECT_EQ(info.shape_rowmajor, t["shape"].get<std::vector<std::int64_t>>());
    EXPECT_EQ(info.offset, t["offset"].get<std::uint64_t>());
    EXPECT_EQ(info.bytes, t["bytes"].get<std::uint64_t>());
    EXPECT_EQ(std::string(r.raw(name)), unhex(t["raw_hex"]));
    // Dequantized values equal gguf-py's bit for bit.
    const auto got = r.read_f32(name);
    const auto want = floats(t["dequantized"]);
    ASSERT_EQ(got.size(), want.size());
    for (std::size_t k = 0; k < got.size(); ++k) EXPECT_EQ(bits(got[k]), bits(want[k])) << k;
    // Our encoders give gguf-py's bytes from the same fp32 inputs.
    GgufWriter w;
    w.add_tensor(name, info.shape_rowmajor, info.type, floats(t["source"]).data());
    const auto mine = GgufReader::parse(w.serialize(), "mine");
    EXPECT_EQ(mine.raw(name), r.raw(name));
    types.insert(info.type);
  }
  EXPECT_EQ(types, (std::set<std::uint32_t>{ggml_type::F32, ggml_type::F16, ggml_type::Q8_0, ggml_type::BF16}));

  // The whole file, rebuilt with our writer from the sidecar, is byte-identical to gguf-py's.
  GgufWriter w;
  for (std::size_t i = 0; i < meta.size(); ++i) w.set(r.metadata()[i].key, r.metadata()[i].value);
  for (const auto& info : r.tensors()) w.add_tensor_bytes(info.name, info.shape_rowmajor, info.type, std::string(r.raw(info.name)));
  EXPECT_EQ(w.serialize(), file);
}

}  // namespace
}  // namespace stretch
