// R lazy-load database reader: hand-made serializations (built here byte by byte, compressed with zlib), and
// the real janeaustenr data when present ($STRETCH_JANEAUSTEN_DIR, else Debian's install path).
#include <gtest/gtest.h>
#include <zlib.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <random>

#include "core/error.hpp"
#include "core/fs.hpp"
#include "io/io_test_util.hpp"
#include "io/rdata.hpp"

namespace stretch {
namespace {
namespace fs = std::filesystem;
using testing::TempDir;

constexpr int kUtf8 = 1 << 3, kLatin1 = 1 << 2, kAscii = 1 << 6;
constexpr int kHasAttr = 1 << 9, kHasTag = 1 << 10;

// R's XDR serialization, written by hand.
struct Xdr {
  std::string s;
  Xdr& i32(std::int64_t v) {
    const auto u = static_cast<std::uint32_t>(v);
    for (int k = 3; k >= 0; --k) s.push_back(static_cast<char>((u >> (8 * k)) & 0xff));
    return *this;
  }
  Xdr& header(int version = 3) {
    s += "X\n";
    i32(version).i32(0x040201).i32(0x030500);
    if (version == 3) i32(5).raw("UTF-8");
    return *this;
  }
  Xdr& raw(const std::string& b) {
    s += b;
    return *this;
  }
  Xdr& chars(const std::string& v, int levels = kAscii) { return i32(9 | (levels << 12)).i32(static_cast<std::int64_t>(v.size())).raw(v); }
  Xdr& na_string() { return i32(9).i32(-1); }
  Xdr& sym(const std::string& name) { return i32(1).chars(name); }
  Xdr& nil() { return i32(254); }
  Xdr& ref(int index) { return i32(255 | (index << 8)); }
  Xdr& strs(const std::vector<std::string>& v, int flags = 0) {
    i32(16 | flags).i32(static_cast<std::int64_t>(v.size()));
    for (const auto& x : v) chars(x);
    return *this;
  }
  Xdr& ints(const std::vector<int>& v, int type = 13) {
    i32(type).i32(static_cast<std::int64_t>(v.size()));
    for (int x : v) i32(x);
    return *this;
  }
  // attributes pairlist with a single "names" entry; `names_ref` > 0 refers back to an earlier "names" symbol
  Xdr& names_attr(const std::vector<std::string>& names, int names_ref = 0) {
    i32(2 | kHasTag);
    if (names_ref) ref(names_ref);
    else sym("names");
    return strs(names).nil();
  }
};

std::string be32(std::uint32_t v) {
  std::string s;
  for (int k = 3; k >= 0; --k) s.push_back(static_cast<char>((v >> (8 * k)) & 0xff));
  return s;
}

std::string zlib(const std::string& data) {
  uLongf n = compressBound(data.size());
  std::string out(n, '\0');
  EXPECT_EQ(compress2(reinterpret_cast<Bytef*>(out.data()), &n, reinterpret_cast<const Bytef*>(data.data()),
                      data.size(), 6),
            Z_OK);
  out.resize(n);
  return out;
}

std::string gzip(const std::string& data) {
  z_stream zs{};
  EXPECT_EQ(deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out(deflateBound(&zs, data.size()) + 32, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = static_cast<uInt>(data.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&zs, Z_FINISH), Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

// R_compress1: 4-byte big-endian length + zlib stream.
std::string record1(const std::string& data) { return be32(static_cast<std::uint32_t>(data.size())) + zlib(data); }

struct Var {
  std::string name;
  std::string serialized;
};

// The index: list(variables = list(name = c(offset, length), ...), references = list(), compressed = <c>).
std::string make_index(const std::vector<std::string>& names, const std::vector<std::pair<int, int>>& locs,
                       int compressed) {
  Xdr x;
  x.header();
  x.i32(19 | kHasAttr).i32(3);
  x.i32(19 | kHasAttr).i32(static_cast<std::int64_t>(names.size()));
  for (const auto& [off, len] : locs) x.ints({off, len});
  x.names_attr(names);                                  // first "names" symbol: reference 1
  x.i32(19 | kHasAttr).i32(0).names_attr({}, 1);       // references: empty named list
  x.ints({compressed}, 10);                             // compressed: logical
  x.names_attr({"variables", "references", "compressed"}, 1);
  return x.s;
}

struct Db {
  fs::path rdb, rdx;
};

// Writes a database; `frame` turns a serialization into a record, `index_frame` wraps the index.
Db write_db(const TempDir& dir, const std::vector<Var>& vars, int compressed = 1,
            const std::function<std::string(const std::string&)>& frame = record1,
            const std::function<std::string(const std::string&)>& index_frame = gzip) {
  std::string rdb;
  std::vector<std::string> names;
  std::vector<std::pair<int, int>> locs;
  for (const auto& v : vars) {
    const std::string rec = frame(v.serialized);
    names.push_back(v.name);
    locs.emplace_back(static_cast<int>(rdb.size()), static_cast<int>(rec.size()));
    rdb += rec;
  }
  return {dir.write("Rdata.rdb", rdb), dir.write("Rdata.rdx", index_frame(make_index(names, locs, compressed)))};
}

std::vector<Var> sample_vars() {
  Xdr lines;
  lines.header();
  lines.i32(16).i32(5);
  lines.chars("It is a truth universally acknowledged");
  lines.na_string();
  lines.chars("caf\xE9", kLatin1);        // Latin-1 'é' -> UTF-8
  lines.chars("na\xC3\xAFve", kUtf8);
  lines.chars("");
  Xdr named;
  named.header();
  named.strs({"x", "y"}, kHasAttr).names_attr({"first", "second"});
  Xdr numbers;
  numbers.header().ints({1, 2, 3});
  Xdr old;
  old.header(2).strs({"version 2"});
  Xdr list;  // list(1L, pairlist(a = "b")) -> not a character vector, skipped
  list.header().i32(19).i32(2).ints({1});
  list.i32(2 | kHasTag).sym("a").strs({"b"}).nil();
  return {{"lines", lines.s}, {"numbers", numbers.s}, {"named", named.s}, {"old", old.s}, {"list", list.s}};
}

void expect_lines(const std::vector<std::pair<std::string, std::vector<std::string>>>& got) {
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].first, "lines");
  EXPECT_EQ(got[0].second, (std::vector<std::string>{"It is a truth universally acknowledged", "", "caf\xC3\xA9",
                                                     "na\xC3\xAFve", ""}));
  EXPECT_EQ(got[1].first, "named");
  EXPECT_EQ(got[1].second, (std::vector<std::string>{"x", "y"}));
  EXPECT_EQ(got[2].first, "old");
  EXPECT_EQ(got[2].second, std::vector<std::string>{"version 2"});
}

TEST(RData, ReadsHandMadeDatabase) {
  TempDir dir;
  const auto db = write_db(dir, sample_vars());
  expect_lines(read_rdata_character_vectors(db.rdb, db.rdx));
}

TEST(RData, ReadsIndexFramings) {
  TempDir dir;
  const auto a = write_db(dir, sample_vars(), 1, record1, record1);  // length + zlib index
  expect_lines(read_rdata_character_vectors(a.rdb, a.rdx));
  const auto b = write_db(dir, sample_vars(), 1, record1, [](const std::string& s) { return s; });  // plain
  expect_lines(read_rdata_character_vectors(b.rdb, b.rdx));
}

TEST(RData, ReadsTypedRecords) {
  TempDir dir;
  auto typed = [](char type) {
    return [type](const std::string& s) {
      return be32(static_cast<std::uint32_t>(s.size())) + std::string(1, type) + (type == '0' ? s : zlib(s));
    };
  };
  for (int compressed : {2, 3}) {
    for (char type : {'0', '1'}) {
      const auto db = write_db(dir, sample_vars(), compressed, typed(type));
      expect_lines(read_rdata_character_vectors(db.rdb, db.rdx));
    }
  }
  const auto stored = write_db(dir, sample_vars(), 0, [](const std::string& s) { return s; });
  expect_lines(read_rdata_character_vectors(stored.rdb, stored.rdx));

  auto expect_error = [&](int compressed, char type, const char* needle) {
    const auto db = write_db(dir, sample_vars(), compressed, typed(type));
    try {
      read_rdata_character_vectors(db.rdb, db.rdx);
      ADD_FAILURE() << "expected InputError: " << needle;
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("variable 'lines'"), std::string::npos) << e.what();
    }
  };
  expect_error(2, '2', "bzip2");
  expect_error(3, 'Z', "xz");
  expect_error(3, 'q', "unknown record compression type");
}

// Reading must fail with an InputError that contains each needle.
void expect_rejected(const Db& db, std::initializer_list<const char*> needles) {
  try {
    read_rdata_character_vectors(db.rdb, db.rdx);
    ADD_FAILURE() << "expected InputError containing '" << *needles.begin() << "'";
  } catch (const InputError& e) {
    for (const char* n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << "missing '" << n << "' in: " << e.what();
  }
}

TEST(RData, RejectsTruncatedRecords) {
  TempDir dir;
  const auto vars = sample_vars();
  const auto db = write_db(dir, vars);
  const std::string rdb = read_file(db.rdb);

  // .rdb cut short: the last record runs past the end
  write_file_atomic(db.rdb, rdb.substr(0, rdb.size() - 5));
  expect_rejected(db, {"Rdata.rdb", "variable 'list'", "runs past the end", "incomplete download"});

  // record's zlib stream cut short (the index agrees with the cut)
  const auto cut = write_db(dir, vars, 1, [](const std::string& s) {
    const std::string r = record1(s);
    return r.substr(0, r.size() - 6);
  });
  expect_rejected(cut, {"variable 'lines'", "truncated", "incomplete download"});

  // zlib stream intact, but the serialization inside is cut mid-string
  const auto inner = write_db(dir, {{"lines", vars[0].serialized.substr(0, vars[0].serialized.size() - 3)}});
  expect_rejected(inner, {"variable 'lines'", "truncated: needs", "incomplete download"});

  // declared uncompressed length disagrees with the stream
  const auto wrong_len = write_db(dir, vars, 1, [](const std::string& s) {
    return be32(static_cast<std::uint32_t>(s.size() + 1)) + zlib(s);
  });
  expect_rejected(wrong_len, {"variable 'lines'", "declared"});

  // a record too short for its length word
  const auto tiny = write_db(dir, vars, 1, [](const std::string&) { return std::string("ab"); });
  expect_rejected(tiny, {"too short"});

  // corrupt zlib bytes
  const auto garbage = write_db(dir, vars, 1, [](const std::string& s) {
    std::string r = record1(s);
    for (std::size_t i = 6; i < r.size(); ++i) r[i] = static_cast<char>(r[i] ^ 0x5a);
    return r;
  });
  expect_rejected(garbage, {"variable 'lines'", "zlib"});
}

TEST(RData, RejectsMalformedSerializations) {
  TempDir dir;
  auto one = [&](const std::string& ser) { return write_db(dir, {{"v", ser}}); };
  expect_rejected(one("A\n1\n"), {"ASCII"});
  expect_rejected(one("RDX3\n"), {"not an R serialization"});
  expect_rejected(one(Xdr().header(4).s), {"version 4"});
  // a string vector claiming a billion elements
  expect_rejected(one(Xdr().header().i32(16).i32(1000000000).s), {"character vector of length 1000000000", "incomplete download"});
  // a string vector element that is not a CHARSXP
  expect_rejected(one(Xdr().header().i32(16).i32(1).ints({1}).s), {"expected CHARSXP"});
  // a reference to nothing, inside the attributes
  expect_rejected(one(Xdr().header().strs({"a"}, kHasAttr).i32(2 | kHasTag).ref(3).strs({"n"}).nil().s), {"reference 3"});
  // an unsupported type in the attributes
  expect_rejected(one(Xdr().header().strs({"a"}, kHasAttr).i32(2 | kHasTag).sym("f").i32(3).s), {"unsupported R object type 3"});
  // index problems
  const auto db = write_db(dir, sample_vars());
  write_file_atomic(db.rdx, gzip(Xdr().header().ints({1, 2}).s));
  expect_rejected(db, {"Rdata.rdx", "named list"});
  write_file_atomic(db.rdx, gzip(make_index({"lines"}, {{0, 1 << 30}}, 1)));
  expect_rejected(db, {"variable 'lines'", "runs past the end"});
  write_file_atomic(db.rdx, read_file(db.rdx).substr(0, 20));
  expect_rejected(db, {"Rdata.rdx", "gzip stream is truncated"});
}

TEST(RData, JaneAustenNeedsAllNovels) {
  TempDir dir;
  try {
    janeausten_text(dir / "nowhere");
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("Rdata.rdb"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("r-cran-janeaustenr"), std::string::npos) << e.what();
  }
  write_db(dir, sample_vars());
  try {
    janeausten_text(dir.path());
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("'sensesensibility'"), std::string::npos) << e.what();
  }
  // six tiny novels, joined in publication order
  std::vector<Var> novels;
  for (const char* n : {"emma", "mansfieldpark", "northangerabbey", "persuasion", "prideprejudice", "sensesensibility"})
    novels.push_back({n, Xdr().header().strs({std::string(n) + " 1", "", std::string(n) + " 2"}).s});
  write_db(dir, novels);
  std::string want;
  for (const char* n : {"sensesensibility", "prideprejudice", "mansfieldpark", "emma", "northangerabbey", "persuasion"})
    want += (want.empty() ? "" : "\n\n") + std::string(n) + " 1\n\n" + n + " 2";
  EXPECT_EQ(janeausten_text(dir.path()), want);
}

fs::path janeausten_dir() {
  if (const char* env = std::getenv("STRETCH_JANEAUSTEN_DIR"); env && *env) return env;
  return "/usr/lib/R/site-library/janeaustenr/data";
}

TEST(RData, JaneAustenNovels) {
  const fs::path dir = janeausten_dir();
  if (!fs::exists(dir / "Rdata.rdb"))
    GTEST_SKIP() << "janeaustenr data not found at " << dir.string()
                 << "; set STRETCH_JANEAUSTEN_DIR to the data folder of Debian's r-cran-janeaustenr "
                    "(apt-get download r-cran-janeaustenr && dpkg-deb -x r-cran-janeaustenr_*_all.deb ja: "
                    "ja/usr/lib/R/site-library/janeaustenr/data)";
  const auto vars = read_rdata_character_vectors(dir / "Rdata.rdb", dir / "Rdata.rdx");
  EXPECT_EQ(vars.size(), 6u);
  const std::string text = janeausten_text(dir);
  std::printf("[ info ] janeausten_text: %zu bytes\n", text.size());
  EXPECT_GT(text.size(), 3'900'000u);
  EXPECT_LT(text.size(), 4'200'000u);
  EXPECT_EQ(text.rfind("SENSE AND SENSIBILITY\n", 0), 0u);
  const std::size_t pp = text.find("PRIDE AND PREJUDICE"), mp = text.find("MANSFIELD PARK"),
                    em = text.find("\nEMMA\n"), na = text.find("NORTHANGER ABBEY"), pe = text.find("\nPersuasion\n");
  EXPECT_LT(pp, mp);
  EXPECT_LT(mp, em);
  EXPECT_LT(em, na);
  EXPECT_LT(na, pe);
  EXPECT_NE(pe, std::string::npos);
  EXPECT_NE(text.find("It is a truth universally acknowledged, that a single man in possession"), std::string::npos);
  EXPECT_NE(text.find("\xC2\xA3"), std::string::npos);  // the pound sign, as UTF-8
}

}  // namespace
}  // namespace stretch

namespace stretch {
namespace {

// Random corruption of stored (uncompressed) records and of the index: InputError or success, nothing else.
TEST(RData, SurvivesRandomCorruption) {
  TempDir dir;
  const auto vars = sample_vars();
  const auto db = write_db(dir, vars, 0, [](const std::string& s) { return s; }, [](const std::string& s) { return s; });
  const std::string rdb = read_file(db.rdb), rdx = read_file(db.rdx);
  std::mt19937 rng(99);
  int ok = 0;
  for (int iter = 0; iter < 800; ++iter) {
    std::string b = rdb, x = rdx;
    std::string& f = iter % 3 == 0 ? x : b;
    if (iter % 5 == 0) {
      f.resize(rng() % f.size());
    } else {
      for (int k = 0; k < 1 + static_cast<int>(rng() % 3); ++k) f[rng() % f.size()] = static_cast<char>(rng());
    }
    std::ofstream(db.rdb, std::ios::binary | std::ios::trunc) << b;  // no fsync: thousands of rewrites
    std::ofstream(db.rdx, std::ios::binary | std::ios::trunc) << x;
    try {
      read_rdata_character_vectors(db.rdb, db.rdx);
      ++ok;
    } catch (const InputError&) {
    }
  }
  EXPECT_GT(ok, 10);
}

}  // namespace
}  // namespace stretch
