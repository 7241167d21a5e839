#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <random>

#include "core/error.hpp"
#include "core/fs.hpp"
#include "io/io_test_util.hpp"
#include "io/safetensors.hpp"

namespace stretch {
namespace {
using testing::TempDir;

// The data buffer's start in a serialized file.
std::size_t data_start(const std::string& file) {
  std::uint64_t n = 0;
  std::memcpy(&n, file.data(), 8);
  return 8 + static_cast<std::size_t>(n);
}

std::string raw_bytes(const std::string& file, const SafetensorsReader& r, const std::string& name) {
  const auto& e = r.entry(name);
  return file.substr(data_start(file) + e.begin, e.end - e.begin);
}

// A hand-made file: the header JSON as given (no padding), then `data`.
std::string make_file(const std::string& json, const std::string& data) {
  std::string out(8, '\0');
  const std::uint64_t n = json.size();
  std::memcpy(out.data(), &n, 8);
  return out + json + data;
}

// Parsing `bytes` must throw an InputError starting with the source name and containing each needle.
void expect_rejected(const std::string& bytes, std::initializer_list<const char*> needles) {
  try {
    SafetensorsReader::parse(bytes, "broken.safetensors");
    ADD_FAILURE() << "expected InputError containing '" << *needles.begin() << "'";
  } catch (const InputError& e) {
    const std::string m = e.what();
    EXPECT_EQ(m.rfind("broken.safetensors: ", 0), 0u) << m;
    for (const char* n : needles) EXPECT_NE(m.find(n), std::string::npos) << "missing '" << n << "' in: " << m;
  }
}

TEST(Safetensors, RoundTripsAllDtypes) {
  SafetensorsWriter w;
  const std::vector<double> f64{1.5, -2.25, 1e300};
  const std::vector<float> f32{0.f, -1.f, 3.5f, 1e-30f, std::numeric_limits<float>::infinity(), 7.f};
  const std::vector<std::uint16_t> f16{0x3C00, 0xC000, 0x7BFF, 0x0001, 0x7C00, 0x8000, 0x3555};
  const std::vector<std::uint16_t> bf16{0x3F80, 0x4049, 0xC2F7, 0x0000, 0xFF80};
  const std::vector<std::int64_t> i64{-5, 1LL << 40, 7};
  const std::vector<std::int32_t> i32{-2147483647 - 1, 0, 2147483647, 42};
  const std::vector<std::int16_t> i16{-32768, 1, 32767};
  const std::vector<std::int8_t> i8{-128, 0, 127};
  const std::vector<std::uint8_t> u8{0, 128, 255};
  const std::vector<std::uint8_t> b{1, 0, 1, 1};
  w.add("f64", DType::F64, {3}, f64.data());
  w.add_f32("f32", {2, 3}, f32.data());
  w.add("f16", DType::F16, {7}, f16.data());
  w.add("bf16", DType::BF16, {5, 1}, bf16.data());
  w.add("i64", DType::I64, {3}, i64.data());
  w.add("i32", DType::I32, {2, 2}, i32.data());
  w.add("i16", DType::I16, {3}, i16.data());
  w.add("i8", DType::I8, {3}, i8.data());
  w.add("u8", DType::U8, {1, 3}, u8.data());
  w.add("bool", DType::BOOL, {4}, b.data());
  w.add("empty", DType::F32, {0, 5}, nullptr);
  w.add("scalar", DType::F32, {}, f32.data());
  const std::string file = w.serialize();
  EXPECT_EQ(data_start(file) % 8, 0u);

  const auto r = SafetensorsReader::parse(file, "mem");
  ASSERT_EQ(r.tensors().size(), 12u);
  const char* order[] = {"f64", "f32", "f16", "bf16", "i64", "i32", "i16", "i8", "u8", "bool", "empty", "scalar"};
  for (std::size_t i = 0; i < 12; ++i) EXPECT_EQ(r.tensors()[i].name, order[i]);  // insertion order = file order
  EXPECT_EQ(r.entry("f32").shape, (std::vector<std::int64_t>{2, 3}));
  EXPECT_EQ(r.entry("f32").dtype, DType::F32);
  EXPECT_EQ(r.entry("bf16").dtype, DType::BF16);
  EXPECT_EQ(r.entry("scalar").numel(), 1);
  EXPECT_EQ(r.entry("empty").numel(), 0);

  EXPECT_EQ(r.read_f64("f64"), f64);
  EXPECT_EQ(r.read_f32("f32"), f32);
  const auto h = r.read_f32("f16");
  EXPECT_EQ(h[0], 1.0f);
  EXPECT_EQ(h[1], -2.0f);
  EXPECT_EQ(h[2], 65504.0f);
  EXPECT_EQ(h[3], std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_TRUE(std::isinf(h[4]) && h[4] > 0);
  EXPECT_TRUE(h[5] == 0.0f && std::signbit(h[5]));
  EXPECT_NEAR(h[6], 1.0f / 3.0f, 1e-3f);
  const auto bf = r.read_f32("bf16");
  EXPECT_EQ(bf[0], 1.0f);
  EXPECT_EQ(bf[1], 3.140625f);
  EXPECT_EQ(bf[2], -123.5f);
  EXPECT_EQ(bf[3], 0.0f);
  EXPECT_TRUE(std::isinf(bf[4]) && bf[4] < 0);
  EXPECT_EQ(r.read_i32("i32"), i32);
  EXPECT_EQ(r.read_f32("scalar"), std::vector<float>{0.f});
  EXPECT_TRUE(r.read_f32("empty").empty());
  auto as_bytes = [](const auto& v) {
    return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(v[0]));
  };
  EXPECT_EQ(raw_bytes(file, r, "i16"), as_bytes(i16));
  EXPECT_EQ(raw_bytes(file, r, "i8"), as_bytes(i8));
  EXPECT_EQ(raw_bytes(file, r, "u8"), as_bytes(u8));
  EXPECT_EQ(raw_bytes(file, r, "bool"), as_bytes(b));
  EXPECT_EQ(raw_bytes(file, r, "i64"), as_bytes(i64));
  EXPECT_EQ(raw_bytes(file, r, "f16"), as_bytes(f16));

  std::vector<float> dst(6);
  r.read_into("f32", {2, 3}, dst.data());
  EXPECT_EQ(dst, f32);
}

TEST(Safetensors, WritesFilesAndMetadata) {
  TempDir dir;
  SafetensorsWriter w;
  w.set_metadata("format", "pt");
  w.set_metadata("stretch.config", "{\"n_layer\": 2, \"note\": \"ünï\"}");
  const float x[3] = {1, 2, 3};
  w.add_f32("wte", {3}, x);
  w.write(dir / "model.safetensors");
  const auto r = SafetensorsReader::open(dir / "model.safetensors");
  EXPECT_EQ(r.source(), (dir / "model.safetensors").string());
  EXPECT_EQ(r.metadata().size(), 2u + 1u);  // and the checksum of the one tensor
  EXPECT_EQ(r.metadata().at("format"), "pt");
  EXPECT_EQ(r.metadata().at("stretch.config"), "{\"n_layer\": 2, \"note\": \"ünï\"}");
  EXPECT_TRUE(r.has("wte"));
  EXPECT_FALSE(r.has("wpe"));
  EXPECT_EQ(r.read_f32("wte"), (std::vector<float>{1, 2, 3}));
  EXPECT_EQ(std::filesystem::file_size(dir / "model.safetensors") % 8, 4u * 3 % 8);  // header padded to 8
}

TEST(Safetensors, ReadsPythonWrittenFile) {
  // Written by Python safetensors 0.8 (safetensors.numpy.save_file): sorted by dtype alignment, not by name.
  const auto r = SafetensorsReader::open(testing::test_data_dir() / "python_written.safetensors");
  EXPECT_EQ(r.metadata().at("format"), "np");
  EXPECT_EQ(r.tensors().size(), 8u);
  EXPECT_EQ(r.tensors().front().name, "steps");  // data order
  EXPECT_EQ(r.read_f32("weight"), (std::vector<float>{0, 0.25f, 0.5f, 0.75f, 1.0f, 1.25f}));
  EXPECT_EQ(r.read_f32("half"), (std::vector<float>{1, -2, 0.5f, 65504}));
  EXPECT_EQ(r.read_f64("scalar"), std::vector<double>{3.5});
  EXPECT_EQ(r.entry("scalar").shape.size(), 0u);
  EXPECT_EQ(r.read_i32("ids"), (std::vector<std::int32_t>{7, -8}));
  EXPECT_EQ(r.entry("mask").dtype, DType::BOOL);
  EXPECT_EQ(r.entry("bytes").dtype, DType::U8);
  EXPECT_EQ(r.entry("empty").shape, (std::vector<std::int64_t>{0, 4}));
  try {
    r.read_i32("steps");  // 3e9 does not fit
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("3000000000"), std::string::npos) << e.what();
  }
}

TEST(Safetensors, TypedReadErrors) {
  SafetensorsWriter w;
  const std::int32_t ids[2] = {1, 2};
  const float x[4] = {1, 2, 3, 4};
  w.add("ids", DType::I32, {2}, ids);
  w.add_f32("x", {2, 2}, x);
  const auto r = SafetensorsReader::parse(w.serialize(), "ckpt.safetensors");
  auto expect = [](auto&& fn, std::initializer_list<const char*> needles) {
    try {
      fn();
      ADD_FAILURE() << "expected InputError";
    } catch (const InputError& e) {
      for (const char* n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
    }
  };
  expect([&] { r.read_f32("ids"); }, {"ckpt.safetensors", "'ids'", "I32", "float"});
  expect([&] { r.read_f64("ids"); }, {"'ids'", "F32 or F64"});
  expect([&] { r.read_i32("x"); }, {"'x'", "I32 or I64"});
  expect([&] { r.entry("nope"); }, {"no tensor named 'nope'", "ids, x"});
  std::vector<float> dst(4);
  expect([&] { r.read_into("x", {4}, dst.data()); }, {"'x'", "shape [2, 2]", "expected [4]"});
}

TEST(Safetensors, WriterRejectsBadNames) {
  SafetensorsWriter w;
  const float x = 1;
  w.add_f32("a", {1}, &x);
  EXPECT_THROW(w.add_f32("a", {1}, &x), ConfigError);
  EXPECT_THROW(w.add_f32("__metadata__", {1}, &x), ConfigError);
  EXPECT_THROW(w.add_f32("neg", {-1}, &x), ConfigError);
}

TEST(Safetensors, RejectsBrokenFiles) {
  const std::string f32x2(8, '\0');
  const std::string good_json = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  ASSERT_NO_THROW(SafetensorsReader::parse(make_file(good_json, f32x2), "ok"));

  // truncation
  expect_rejected("", {"0 bytes", "too short", "incomplete download"});
  expect_rejected(std::string("\x10\0\0", 3), {"too short", "incomplete download"});
  const std::string good = make_file(good_json, f32x2);
  expect_rejected(good.substr(0, 20), {"header length", "runs past the end of the file", "incomplete download"});
  expect_rejected(good.substr(0, good.size() - 1), {"tensor 'a'", "past the end of the data buffer", "incomplete download"});
  std::string huge(8, '\0');
  huge[7] = 0x40;
  expect_rejected(huge + "{}", {"absurd"});
  // JSON
  expect_rejected(make_file("{\"a\": ", ""), {"invalid JSON"});
  expect_rejected(make_file("[1, 2]", ""), {"not an object"});
  expect_rejected(make_file(R"({"a": 3})", ""), {"tensor 'a'", "entry is not an object"});
  expect_rejected(make_file(R"({"__metadata__": {"k": 1}})", ""), {"__metadata__", "not a string"});
  expect_rejected(make_file(R"({"__metadata__": []})", ""), {"__metadata__", "not an object"});
  // dtype
  expect_rejected(make_file(R"({"a":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}})", "xx"),
                  {"tensor 'a'", "unknown dtype 'F8_E4M3'", "expected one of F64, F32"});
  expect_rejected(make_file(R"({"a":{"shape":[2],"data_offsets":[0,8]}})", f32x2), {"dtype"});
  // shape
  for (const char* shape : {"[-2]", "[1.5]", "[\"2\"]", "2", "[true]"})
    expect_rejected(make_file(std::string(R"({"a":{"dtype":"F32","shape":)") + shape + R"(,"data_offsets":[0,8]}})", f32x2),
                    {"tensor 'a'", "shape", "non-negative integers"});
  // offsets
  expect_rejected(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}})", f32x2),
                  {"tensor 'a'", "[0, 16]", "past the end of the data buffer (8 bytes)"});
  expect_rejected(make_file(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}})", f32x2), {"begin > end"});
  expect_rejected(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", f32x2), {"[begin, end]"});
  expect_rejected(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}})", f32x2), {"[begin, end]"});
  expect_rejected(make_file(R"({"a":{"dtype":"F32","shape":[2]}})", f32x2), {"data_offsets", "missing"});
  // shape vs bytes
  expect_rejected(make_file(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", f32x2),
                  {"tensor 'a'", "shape [3] of F32 needs 12 bytes", "hold 8"});
  expect_rejected(make_file(R"({"a":{"dtype":"F32","shape":[4611686018427387904, 4],"data_offsets":[0,8]}})", f32x2),
                  {"too large"});
  // overlap
  expect_rejected(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                            R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                            f32x2),
                  {"'a'", "'b'", "overlap"});
  // zero-sized tensors may share an offset
  ASSERT_NO_THROW(SafetensorsReader::parse(
      make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"z":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}})", f32x2), "ok"));
}

// The writer's bytes against a file Python's safetensors wrote (tests/io/data/python_written.safetensors: metadata
// first, tensors in data order, compact JSON padded with spaces): the same tensors and metadata, added in that
// order by copy, by reference or (the all-zero "empty") as zeros, come out byte for byte the same, from write()
// (streamed to disk) and from serialize(), once the checksum entries (which Python's writer has no notion of)
// are turned off.
TEST(Safetensors, WriterReproducesAPythonWrittenFileByteForByte) {
  const auto path = testing::test_data_dir() / "python_written.safetensors";
  const std::string python = read_file(path);
  const auto r = SafetensorsReader::parse(python, "python");
  TempDir dir;
  for (int mode = 0; mode < 3; ++mode) {
    SafetensorsWriter w;
    w.set_checksums(false);
    for (const auto& [k, v] : r.metadata()) w.set_metadata(k, v);
    for (const auto& e : r.tensors()) {
      const char* data = python.data() + data_start(python) + e.begin;
      if (mode == 0) w.add(e.name, e.dtype, e.shape, data);
      if (mode == 1) w.add_ref(e.name, e.dtype, e.shape, data);
      if (mode == 2 && e.begin == e.end) w.add_zeros(e.name, e.dtype, e.shape);
      if (mode == 2 && e.begin != e.end) w.add_ref(e.name, e.dtype, e.shape, data);
    }
    EXPECT_EQ(w.serialize(), python) << "mode " << mode;
    w.write(dir / "again.safetensors");
    EXPECT_EQ(read_file(dir / "again.safetensors"), python) << "mode " << mode;
  }
}

// add_zeros writes the bytes of a zero-filled buffer (larger than the writer's 64 KiB block of zeros, and an odd
// size), add_ref the referenced bytes as they are at write time, add a copy taken when added.
TEST(Safetensors, ZerosReferencesAndCopiesWriteTheSameBytes) {
  const std::vector<std::int64_t> shape{3, 70001};  // 840,012 bytes of F32
  const std::vector<float> zeros(3 * 70001, 0.0f);
  std::vector<float> x(3 * 70001);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i) * 0.5f - 7.0f;
  SafetensorsWriter a, b;
  a.set_metadata("k", "v");
  b.set_metadata("k", "v");
  a.add_f32("z", shape, zeros.data());
  a.add("h", DType::BF16, {5}, x.data());
  a.add_f32("x", shape, x.data());
  b.add_zeros("z", DType::F32, shape);
  b.add_ref("h", DType::BF16, {5}, x.data());
  b.add_f32_ref("x", shape, x.data());
  EXPECT_EQ(a.serialize(), b.serialize());
  TempDir dir;
  b.write(dir / "b.safetensors");
  EXPECT_EQ(read_file(dir / "b.safetensors"), a.serialize());
  const auto r = SafetensorsReader::open(dir / "b.safetensors");
  EXPECT_EQ(r.read_f32("z"), zeros);
  EXPECT_EQ(r.read_f32("x"), x);
  x[0] = 123.0f;  // a reference sees the change, a copy does not
  EXPECT_EQ(SafetensorsReader::parse(b.serialize(), "b").read_f32("x")[0], 123.0f);
  EXPECT_EQ(SafetensorsReader::parse(a.serialize(), "a").read_f32("x")[0], -7.0f);
  EXPECT_THROW(b.add_ref("n", DType::F32, {2}, nullptr), ConfigError);  // no data for a non-empty tensor
  EXPECT_THROW(b.add_zeros("z", DType::F32, {1}), ConfigError);        // duplicate name
}

// A write that fails (here: the folder does not exist) throws IoError naming the file and leaves nothing behind.
TEST(Safetensors, FailedStreamedWriteNamesTheFile) {
  TempDir dir;
  SafetensorsWriter w;
  w.add_zeros("z", DType::F32, {1000});
  try {
    w.write(dir / "missing" / "out.safetensors");
    FAIL() << "expected IoError";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("out.safetensors"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(dir / "missing"));
}

// release() drops a tensor's pages; the tensor stays readable (faulted in again from the file).
TEST(Safetensors, ReleasedTensorsStayReadable) {
  TempDir dir;
  std::vector<float> x(300000);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i);
  SafetensorsWriter w;
  w.add_f32_ref("a", {300000}, x.data());
  w.add_f32_ref("b", {3}, x.data());
  w.write(dir / "t.safetensors");
  const auto r = SafetensorsReader::open(dir / "t.safetensors");
  std::vector<float> dst(300000);
  r.read_into("a", {300000}, dst.data());
  r.release("a");
  r.release("b");
  EXPECT_EQ(dst, x);
  EXPECT_EQ(r.read_f32("a"), x);
  EXPECT_EQ(r.read_f32("b"), (std::vector<float>{0, 1, 2}));
  EXPECT_THROW(r.release("nope"), InputError);
  const auto parsed = SafetensorsReader::parse(read_file(dir / "t.safetensors"), "mem");
  parsed.release("a");  // a parsed buffer: nothing to drop
  EXPECT_EQ(parsed.read_f32("a"), x);
}

// The writer stores each tensor's XXH3-64 in the metadata; every read verifies it. One flipped bit anywhere in a
// tensor's bytes (its first byte, a byte in the last of several 8 MiB release blocks, its last byte) is refused by
// every reading function with the file, the tensor and "checksum" named, while the other tensors still read.
TEST(Safetensors, ChecksumsCatchAFlippedBitInEveryReader) {
  const std::size_t n = 2'500'000;  // 10 MB of F32: two release blocks
  std::vector<float> big(n);
  for (std::size_t i = 0; i < n; ++i) big[i] = static_cast<float>(i % 977) * 0.25f;
  const double d[2] = {1.5, -2.5};
  const std::int32_t ids[3] = {4, 5, 6};
  SafetensorsWriter w;
  w.add_f32_ref("big", {static_cast<std::int64_t>(n)}, big.data());
  w.add("dbl", DType::F64, {2}, d);
  w.add("ids", DType::I32, {3}, ids);
  const std::string good = w.serialize();
  const auto clean = SafetensorsReader::parse(good, "clean");
  ASSERT_TRUE(clean.checksum("big").has_value());
  EXPECT_EQ(clean.metadata().at("xxh3_64:ids").size(), 16u);
  EXPECT_EQ(clean.read_f32("big"), big);

  TempDir dir;
  auto expect_damage = [&](const std::function<void()>& read, const std::string& tensor) {
    try {
      read();
      ADD_FAILURE() << "expected InputError for tensor " << tensor;
    } catch (const InputError& e) {
      const std::string m = e.what();
      for (const std::string& needle : {std::string("bad.safetensors"), "tensor '" + tensor + "'", std::string("checksum")})
        EXPECT_NE(m.find(needle), std::string::npos) << "missing '" << needle << "' in: " << m;
    }
  };
  const auto& e = clean.entry("big");
  const std::size_t start = data_start(good) + e.begin;
  for (std::size_t at : {std::size_t{0}, e.end - e.begin - 3, (std::size_t{9} << 20) + 5}) {
    std::string bad = good;
    bad[start + at] = static_cast<char>(bad[start + at] ^ 0x10);
    write_file_atomic(dir / "bad.safetensors", bad);
    const auto r = SafetensorsReader::open(dir / "bad.safetensors");  // the header is intact: opening works
    std::vector<float> dst(n);
    const std::vector<std::int64_t> shape{static_cast<std::int64_t>(n)};
    expect_damage([&] { r.read_f32("big"); }, "big");
    expect_damage([&] { r.read_into("big", shape, dst.data()); }, "big");
    expect_damage([&] { r.read_into("big", shape, dst.data(), SourcePages::release); }, "big");
    EXPECT_EQ(r.read_f64("dbl"), (std::vector<double>{1.5, -2.5}));
    EXPECT_EQ(r.read_i32("ids"), (std::vector<std::int32_t>{4, 5, 6}));
  }
  for (const std::string tensor : {"dbl", "ids"}) {
    std::string bad = good;
    const std::size_t at = data_start(good) + clean.entry(tensor).begin + 1;
    bad[at] = static_cast<char>(bad[at] ^ 1);
    write_file_atomic(dir / "bad.safetensors", bad);
    const auto r = SafetensorsReader::open(dir / "bad.safetensors");
    expect_damage([&] { tensor == "dbl" ? (void)r.read_f64("dbl") : (void)r.read_i32("ids"); }, tensor);
  }
}

// Checksum entries must name a tensor of the file and hold 16 hex digits; files without them load (other tools').
TEST(Safetensors, RejectsMalformedChecksumEntries) {
  const std::string f32x2(8, '\0');
  const std::string t = R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  expect_rejected(make_file(R"({"__metadata__":{"xxh3_64:b":"0123456789abcdef"},)" + t + "}", f32x2),
                  {"xxh3_64:b", "tensor the file does not hold"});
  expect_rejected(make_file(R"({"__metadata__":{"xxh3_64:a":"12345"},)" + t + "}", f32x2),
                  {"xxh3_64:a", "16 hexadecimal digits"});
  const auto r = SafetensorsReader::parse(make_file("{" + t + "}", f32x2), "plain");
  EXPECT_FALSE(r.checksum("a").has_value());
  EXPECT_EQ(r.read_f32("a"), (std::vector<float>{0, 0}));
}

// A header over 16 MiB is refused from its length alone, before any JSON is parsed (this one is not even JSON:
// the message would say "invalid JSON" had it been parsed).
TEST(Safetensors, RefusesAHugeHeaderBeforeParsingIt) {
  const std::string junk((std::size_t{16} << 20) + 8, '[');
  expect_rejected(make_file(junk, ""), {"header length 16777224", "at most 16777216"});
  const std::string ok_size(std::size_t{1} << 20, ' ');  // 1 MiB of padding: parsed, and refused as not an object
  expect_rejected(make_file("[]" + ok_size, ""), {"not an object"});
}

TEST(Safetensors, OpenNamesMissingFile) {
  TempDir dir;
  try {
    SafetensorsReader::open(dir / "nope.safetensors");
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("nope.safetensors"), std::string::npos);
  }
  const auto p = dir.write("short.safetensors", "abc");
  try {
    SafetensorsReader::open(p);
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_EQ(std::string(e.what()).rfind(p.string(), 0), 0u) << e.what();
  }
  try {
    SafetensorsReader::open(dir.path());
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("is a directory"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace stretch

namespace stretch {
namespace {

// Random byte flips and truncations of a valid file: each either parses (and then reads cleanly) or throws
// InputError; never anything else (run under ASan/UBSan to check memory safety too).
TEST(Safetensors, SurvivesRandomCorruption) {
  SafetensorsWriter w;
  w.set_metadata("format", "pt");
  const std::vector<float> x{1, 2, 3, 4, 5, 6};
  const std::vector<std::uint16_t> h{0x3C00, 0x4000};
  const std::vector<std::int64_t> l{1, 2};
  w.add_f32("x", {2, 3}, x.data());
  w.add("h", DType::F16, {2}, h.data());
  w.add("l", DType::I64, {2}, l.data());
  const std::string good = w.serialize();
  std::mt19937 rng(1234);
  int parsed = 0;
  for (int iter = 0; iter < 4000; ++iter) {
    std::string f = good;
    if (iter % 4 == 0) {
      f.resize(rng() % f.size());
    } else {
      const int flips = 1 + static_cast<int>(rng() % 3);
      for (int k = 0; k < flips; ++k) {
        const std::size_t pos = iter % 2 ? rng() % f.size() : rng() % 8 + (rng() % 2 ? 8 : 0) + rng() % 120;
        f[pos % f.size()] = static_cast<char>(rng());
      }
    }
    try {
      const auto r = SafetensorsReader::parse(f, "fuzz");
      ++parsed;
      for (const auto& e : r.tensors()) {
        try {
          r.read_f32(e.name);
        } catch (const InputError&) {
        }
        try {
          r.read_i32(e.name);
        } catch (const InputError&) {
        }
      }
    } catch (const InputError&) {
    }
  }
  EXPECT_GT(parsed, 100);  // some flips land in tensor data and leave the file valid
}

}  // namespace
}  // namespace stretch
