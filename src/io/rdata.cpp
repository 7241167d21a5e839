// Reader for R lazy-load databases (see rdata.hpp): an XDR unserializer for the subset of R's serialization
// format that data packages use (R's src/main/serialize.c), plus the .rdx/.rdb framing.
//
// Item encoding: a 32-bit big-endian flags word: type = flags & 0xFF, is-object bit 8, has-attributes bit 9,
// has-tag bit 10, "levels" (for CHARSXP: the encoding bits) = flags >> 12. Pairlists (LISTSXP, LANGSXP) are
// [attributes] [tag] car cdr; vectors are length (-1: a 64-bit length follows as two ints) then the elements,
// then the attributes pairlist when the has-attributes bit is set. Symbols go into a reference table, and a
// REFSXP item (index = flags >> 8, or a following int when that is 0) refers back into it.
//
// Framing: the .rdx is a saveRDS() file (gzip; older or hand-made ones are 4-byte length + zlib, or plain);
// each .rdb record is compressed per the index's $compressed: TRUE/1 = 4-byte big-endian length + zlib stream;
// 2 and 3 = 4-byte length, a type byte ('0' stored, '1' zlib, '2' bzip2, 'Z' xz), then the data. zlib and stored
// records are read; bzip2 and xz are rejected by name.
#include "io/rdata.hpp"

#include <zlib.h>

#include <cstring>
#include <memory>

#include "core/error.hpp"
#include "core/fs.hpp"

namespace stretch {
namespace fs = std::filesystem;

namespace {

constexpr std::size_t kMaxUncompressed = std::size_t{1} << 31;  // 2 GiB: larger is corruption, not a data set

enum : int {
  NILSXP = 0, SYMSXP = 1, LISTSXP = 2, CLOSXP = 3, ENVSXP = 4, PROMSXP = 5, LANGSXP = 6, CHARSXP = 9, LGLSXP = 10,
  INTSXP = 13, REALSXP = 14, CPLXSXP = 15, STRSXP = 16, DOTSXP = 17, VECSXP = 19, EXPRSXP = 20, RAWSXP = 24,
  S4SXP = 25, ALTREP_SXP = 238, ATTRLISTSXP = 239, ATTRLANGSXP = 240, BASEENV_SXP = 241, EMPTYENV_SXP = 242,
  PERSISTSXP = 247, PACKAGESXP = 248, NAMESPACESXP = 249, BASENAMESPACE_SXP = 250, MISSINGARG_SXP = 251,
  UNBOUNDVALUE_SXP = 252, GLOBALENV_SXP = 253, NILVALUE_SXP = 254, REFSXP = 255,
};
constexpr int kBytesMask = 1 << 1, kLatin1Mask = 1 << 2, kUtf8Mask = 1 << 3, kAsciiMask = 1 << 6;

struct RObj {
  int type = NILSXP;
  std::vector<std::string> strings;  // STRSXP elements; SYMSXP / CHARSXP: strings[0]
  std::vector<std::int32_t> ints;    // LGLSXP, INTSXP
  std::vector<double> reals;         // REALSXP (CPLXSXP: re, im pairs)
  std::vector<RObj> items;           // VECSXP / EXPRSXP elements; pairlist CARs
  std::vector<std::string> tags;     // pairlist tags ("" when untagged)
  std::shared_ptr<RObj> attr;        // attributes (a pairlist), may be null

  const RObj* attribute(const std::string& name) const {
    if (!attr) return nullptr;
    for (std::size_t i = 0; i < attr->tags.size(); ++i)
      if (attr->tags[i] == name) return &attr->items[i];
    return nullptr;
  }
};

std::string latin1_to_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size() + s.size() / 8);
  for (unsigned char c : s) {
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back(static_cast<char>(0xC0 | (c >> 6)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    }
  }
  return out;
}

class Unserializer {
 public:
  Unserializer(std::string_view data, std::string where) : d_(data), where_(std::move(where)) {}

  void header() {
    if (d_.size() < 2 || d_[1] != '\n' || d_[0] != 'X') {
      if (d_.size() >= 2 && (d_[0] == 'A' || d_[0] == 'B') && d_[1] == '\n')
        fail(std::string("R serialization in ") + (d_[0] == 'A' ? "ASCII" : "native binary") +
             " format; only XDR ('X') is supported");
      fail("not an R serialization (expected it to start with \"X\\n\", XDR format)");
    }
    pos_ = 2;
    const std::int32_t version = i32();
    i32();  // writer's R version
    i32();  // minimal reader R version
    if (version == 3) {
      const std::int32_t nelen = i32();
      if (nelen < 0 || nelen > 256) fail("bad native-encoding length " + std::to_string(nelen));
      const std::string enc(bytes(static_cast<std::size_t>(nelen)));
      native_latin1_ = enc == "ISO-8859-1" || enc == "latin1" || enc == "ISO8859-1";
    } else if (version != 2) {
      fail("serialization version " + std::to_string(version) + " (expected 2 or 3)");
    }
  }

  // The type of the next item, without consuming it.
  int peek_type() {
    const std::size_t save = pos_;
    const int t = static_cast<int>(static_cast<std::uint32_t>(i32()) & 0xFF);
    pos_ = save;
    return t;
  }

  RObj item(int depth = 0) { return item_with_flags(static_cast<std::uint32_t>(i32()), depth); }

 private:
  [[noreturn]] void fail(const std::string& what) const { throw InputError(where_ + ": " + what); }

  void need(std::size_t n) const {
    if (n > d_.size() - pos_)
      fail("truncated: needs " + std::to_string(n) + " more bytes at offset " + std::to_string(pos_) + " of " +
           std::to_string(d_.size()) + ". Perhaps an incomplete download or corrupt file?");
  }
  std::int32_t i32() {
    need(4);
    std::uint32_t v = 0;
    for (int k = 0; k < 4; ++k) v = (v << 8) | static_cast<unsigned char>(d_[pos_++]);
    return static_cast<std::int32_t>(v);
  }
  double f64() {
    need(8);
    std::uint64_t v = 0;
    for (int k = 0; k < 8; ++k) v = (v << 8) | static_cast<unsigned char>(d_[pos_++]);
    double x;
    std::memcpy(&x, &v, 8);
    return x;
  }
  std::string_view bytes(std::size_t n) {
    need(n);
    std::string_view s = d_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  // A vector length, checked against the bytes left assuming each element takes at least `min_bytes`.
  std::size_t length(std::size_t min_bytes, const char* what) {
    std::int64_t len = i32();
    if (len == -1) {
      const auto hi = static_cast<std::uint32_t>(i32()), lo = static_cast<std::uint32_t>(i32());
      len = static_cast<std::int64_t>((static_cast<std::uint64_t>(hi) << 32) | lo);
    }
    if (len < 0) fail(std::string("negative length of ") + what);
    const auto n = static_cast<std::uint64_t>(len);
    if (min_bytes && n > (d_.size() - pos_) / min_bytes)
      fail(std::string(what) + " of length " + std::to_string(n) + " needs at least " +
           std::to_string(n * min_bytes) + " bytes but only " + std::to_string(d_.size() - pos_) +
           " are left. Perhaps an incomplete download or corrupt file?");
    return static_cast<std::size_t>(n);
  }

  RObj charsxp(std::uint32_t flags) {
    const int levels = static_cast<int>(flags >> 12);
    const std::int32_t len = i32();
    RObj r;
    r.type = CHARSXP;
    if (len == -1) {  // NA_STRING
      r.strings.emplace_back();
      return r;
    }
    if (len < 0) fail("negative string length " + std::to_string(len));
    std::string_view s = bytes(static_cast<std::size_t>(len));
    const bool latin1 = (levels & kLatin1Mask) ||
                        (native_latin1_ && !(levels & (kUtf8Mask | kAsciiMask | kBytesMask)));
    r.strings.push_back(latin1 ? latin1_to_utf8(s) : std::string(s));
    return r;
  }

  RObj item_with_flags(std::uint32_t flags, int depth) {
    if (depth > 2000) fail("objects nested more than 2000 deep");
    const int type = static_cast<int>(flags & 0xFF);
    const bool has_attr = flags & (1u << 9), has_tag = flags & (1u << 10);
    RObj r;
    r.type = type;
    switch (type) {
      case NILVALUE_SXP:
        r.type = NILSXP;
        return r;
      case EMPTYENV_SXP:
      case BASEENV_SXP:
      case GLOBALENV_SXP:
      case UNBOUNDVALUE_SXP:
      case MISSINGARG_SXP:
      case BASENAMESPACE_SXP:
        return r;  // markers without payload
      case REFSXP: {
        std::int64_t idx = flags >> 8;
        if (idx == 0) idx = i32();
        if (idx < 1 || idx > static_cast<std::int64_t>(refs_.size()))
          fail("reference " + std::to_string(idx) + " out of range (" + std::to_string(refs_.size()) +
               " objects seen so far)");
        return refs_[static_cast<std::size_t>(idx - 1)];
      }
      case SYMSXP: {
        RObj name = item(depth + 1);
        if (name.type != CHARSXP) fail("symbol name is R type " + std::to_string(name.type) + ", expected CHARSXP");
        r.strings = std::move(name.strings);
        refs_.push_back(r);
        return r;
      }
      case LISTSXP:
      case LANGSXP:
      case DOTSXP: {
        // A chain of nodes read iteratively (long pairlists must not recurse): [attr] [tag] car, then the cdr.
        bool first = true;
        std::uint32_t f = flags;
        for (;;) {
          const bool a = f & (1u << 9), t = f & (1u << 10);
          if (a) {
            auto at = std::make_shared<RObj>(item(depth + 1));
            if (first) r.attr = std::move(at);
          }
          std::string tag;
          if (t) {
            RObj tg = item(depth + 1);
            if (!tg.strings.empty()) tag = tg.strings[0];
          }
          r.tags.push_back(std::move(tag));
          r.items.push_back(item(depth + 1));
          first = false;
          const auto next = static_cast<std::uint32_t>(i32());
          const int nt = static_cast<int>(next & 0xFF);
          if (nt == type) {
            f = next;
            continue;
          }
          RObj tail = item_with_flags(next, depth + 1);  // NILVALUE normally; a dotted pair's last cdr otherwise
          if (tail.type != NILSXP) {
            r.tags.emplace_back();
            r.items.push_back(std::move(tail));
          }
          return r;
        }
      }
      case CHARSXP:
        return charsxp(flags);
      case STRSXP: {
        const std::size_t n = length(8, "character vector");
        r.strings.reserve(n);
        for (std::size_t i = 0; i < n; ++i) {
          const auto ef = static_cast<std::uint32_t>(i32());
          if ((ef & 0xFF) != CHARSXP)
            fail("element " + std::to_string(i) + " of a character vector is R type " + std::to_string(ef & 0xFF) +
                 ", expected CHARSXP (9)");
          r.strings.push_back(std::move(charsxp(ef).strings[0]));
        }
        break;
      }
      case LGLSXP:
      case INTSXP: {
        const std::size_t n = length(4, type == LGLSXP ? "logical vector" : "integer vector");
        r.ints.resize(n);
        for (std::size_t i = 0; i < n; ++i) r.ints[i] = i32();
        break;
      }
      case REALSXP:
      case CPLXSXP: {
        const std::size_t n = length(type == REALSXP ? 8 : 16, type == REALSXP ? "double vector" : "complex vector");
        r.reals.resize(type == REALSXP ? n : 2 * n);
        for (auto& x : r.reals) x = f64();
        break;
      }
      case RAWSXP: {
        const std::size_t n = length(1, "raw vector");
        r.strings.emplace_back(bytes(n));
        break;
      }
      case VECSXP:
      case EXPRSXP: {
        const std::size_t n = length(4, "list");
        r.items.reserve(n);
        for (std::size_t i = 0; i < n; ++i) r.items.push_back(item(depth + 1));
        break;
      }
      case ALTREP_SXP:
        fail("ALTREP object (a compact vector from R >= 3.5) is not supported");
      default:
        fail("unsupported R object type " + std::to_string(type) +
             " (this reader handles NULL, symbols, pairlists, strings, logical/integer/double/complex/raw "
             "vectors and lists)");
    }
    if (has_attr) r.attr = std::make_shared<RObj>(item(depth + 1));
    (void)has_tag;
    return r;
  }

  std::string_view d_;
  std::string where_;
  std::size_t pos_ = 0;
  bool native_latin1_ = false;
  std::vector<RObj> refs_;
};

std::uint32_t be32(std::string_view s) {
  std::uint32_t v = 0;
  for (int k = 0; k < 4; ++k) v = (v << 8) | static_cast<unsigned char>(s[static_cast<std::size_t>(k)]);
  return v;
}

// zlib stream -> exactly `outlen` bytes (truncated, corrupt and wrong-length streams told apart).
std::string inflate_exact(std::string_view src, std::uint32_t outlen, const std::string& where) {
  if (outlen > kMaxUncompressed)
    throw InputError(where + ": declared uncompressed length " + std::to_string(outlen) + " is absurd");
  // deflate cannot compress better than about 1032:1, so a larger claim is corruption (and not worth allocating)
  if (outlen > src.size() * 1040 + 64)
    throw InputError(where + ": declared uncompressed length " + std::to_string(outlen) + " is impossible for " +
                     std::to_string(src.size()) + " bytes of zlib data. Perhaps an incomplete download or corrupt file?");
  std::string out(static_cast<std::size_t>(outlen) + 1, '\0');  // one spare byte detects a longer stream
  z_stream zs{};
  if (inflateInit(&zs) != Z_OK) throw std::bad_alloc();
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(src.data()));
  zs.avail_in = static_cast<uInt>(src.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  const int rc = inflate(&zs, Z_FINISH);
  const std::size_t got = zs.total_out;
  const bool input_left = zs.avail_in > 0;
  inflateEnd(&zs);
  const char* hint = ". Perhaps an incomplete download or corrupt file?";
  if (rc == Z_MEM_ERROR) throw std::bad_alloc();
  if (rc == Z_STREAM_END) {
    if (got != outlen)
      throw InputError(where + ": zlib stream holds " + std::to_string(got) + " bytes, but the record declared " +
                       std::to_string(outlen) + hint);
    out.resize(outlen);
    return out;
  }
  if (rc == Z_DATA_ERROR || rc == Z_NEED_DICT) throw InputError(where + ": corrupt zlib stream" + hint);
  if (!input_left)
    throw InputError(where + ": zlib stream is truncated (" + std::to_string(src.size()) + " compressed bytes gave " +
                     std::to_string(got) + " of the declared " + std::to_string(outlen) + ")" + hint);
  throw InputError(where + ": zlib stream holds more than the declared " + std::to_string(outlen) + " bytes" + hint);
}

// gzip (or zlib) stream of unknown length -> bytes.
std::string gunzip(std::string_view src, const std::string& where) {
  z_stream zs{};
  if (inflateInit2(&zs, 15 + 32) != Z_OK) throw std::bad_alloc();
  std::string out;
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(src.data()));
  zs.avail_in = static_cast<uInt>(src.size());
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    if (out.size() > kMaxUncompressed) {
      inflateEnd(&zs);
      throw InputError(where + ": uncompresses to more than 2 GiB; not an R index file?");
    }
    const std::size_t old = out.size();
    out.resize(old + 65536);
    zs.next_out = reinterpret_cast<Bytef*>(out.data() + old);
    zs.avail_out = 65536;
    rc = inflate(&zs, Z_NO_FLUSH);
    out.resize(old + 65536 - zs.avail_out);
    if (rc == Z_STREAM_END) break;
    if (rc != Z_OK) {
      inflateEnd(&zs);
      throw InputError(where + ": " + (rc == Z_BUF_ERROR ? "gzip stream is truncated" : "corrupt gzip stream") +
                       ". Perhaps an incomplete download or corrupt file?");
    }
  }
  inflateEnd(&zs);
  return out;
}

// One .rdb record, decompressed per the index's `compressed` value.
std::string decompress_record(std::string_view rec, int compressed, const std::string& where) {
  if (compressed == 0) return std::string(rec);  // stored as is
  if (rec.size() < 4) throw InputError(where + ": record of " + std::to_string(rec.size()) + " bytes is too short (expected a 4-byte length and compressed data)");
  const std::uint32_t outlen = be32(rec);
  if (compressed == 1) return inflate_exact(rec.substr(4), outlen, where);
  if (rec.size() < 5) throw InputError(where + ": record of " + std::to_string(rec.size()) + " bytes is too short (expected a length, a type byte and data)");
  const char type = rec[4];
  switch (type) {
    case '0':
      if (rec.size() - 5 != outlen)
        throw InputError(where + ": stored record holds " + std::to_string(rec.size() - 5) + " bytes, expected " + std::to_string(outlen));
      return std::string(rec.substr(5));
    case '1':
      return inflate_exact(rec.substr(5), outlen, where);
    case '2':
      throw InputError(where + ": record is bzip2-compressed (type '2'); only zlib-compressed lazy-load databases are supported");
    case 'Z':
      throw InputError(where + ": record is xz-compressed (type 'Z'); only zlib-compressed lazy-load databases are supported");
    default:
      throw InputError(where + ": unknown record compression type byte " + std::to_string(static_cast<unsigned char>(type)) + " (expected '0', '1', '2' or 'Z')");
  }
}

std::int64_t as_int(const RObj& o, std::size_t i) {
  if (o.type == INTSXP || o.type == LGLSXP) return o.ints.at(i);
  return static_cast<std::int64_t>(o.reals.at(i));
}

}  // namespace

std::vector<std::pair<std::string, std::vector<std::string>>> read_rdata_character_vectors(const fs::path& rdb,
                                                                                           const fs::path& rdx) {
  const std::string idx_name = rdx.string();
  const std::string raw_idx = read_file(rdx);
  std::string idx;
  if (raw_idx.size() >= 2 && static_cast<unsigned char>(raw_idx[0]) == 0x1f && static_cast<unsigned char>(raw_idx[1]) == 0x8b)
    idx = gunzip(raw_idx, idx_name);
  else if (raw_idx.size() >= 2 && raw_idx[0] == 'X' && raw_idx[1] == '\n')
    idx = raw_idx;
  else
    idx = decompress_record(raw_idx, 1, idx_name);

  Unserializer u(idx, idx_name);
  u.header();
  const RObj root = u.item();
  const RObj* names = root.attribute("names");
  if (root.type != VECSXP || !names || names->type != STRSXP || names->strings.size() != root.items.size())
    throw InputError(idx_name + ": expected a named list (variables, references, compressed), the index of an R lazy-load database");
  const RObj* vars = nullptr;
  int compressed = 1;
  for (std::size_t i = 0; i < root.items.size(); ++i) {
    const auto& key = names->strings[i];
    const auto& v = root.items[i];
    if (key == "variables") vars = &v;
    if (key == "compressed" && (v.type == LGLSXP || v.type == INTSXP || v.type == REALSXP) && (!v.ints.empty() || !v.reals.empty()))
      compressed = static_cast<int>(as_int(v, 0));
  }
  if (!vars || vars->type != VECSXP) throw InputError(idx_name + ": no $variables list (expected the index of an R lazy-load database)");
  const RObj* var_names = vars->attribute("names");
  if (!vars->items.empty() && (!var_names || var_names->type != STRSXP || var_names->strings.size() != vars->items.size()))
    throw InputError(idx_name + ": $variables has no names");
  if (compressed < 0 || compressed > 3) throw InputError(idx_name + ": unknown $compressed value " + std::to_string(compressed) + " (expected 0 to 3)");

  const std::string db = read_file(rdb);
  const std::string db_name = rdb.string();
  std::vector<std::pair<std::string, std::vector<std::string>>> out;
  for (std::size_t i = 0; i < vars->items.size(); ++i) {
    const std::string& name = var_names->strings[i];
    const RObj& loc = vars->items[i];
    const std::size_t n = loc.type == REALSXP ? loc.reals.size() : loc.ints.size();
    if ((loc.type != INTSXP && loc.type != REALSXP) || n != 2)
      throw InputError(idx_name + ": $variables$" + name + " is not an (offset, length) pair");
    const std::int64_t off = as_int(loc, 0), len = as_int(loc, 1);
    if (off < 0 || len < 0 || static_cast<std::uint64_t>(off) > db.size() || static_cast<std::uint64_t>(len) > db.size() - static_cast<std::uint64_t>(off))
      throw InputError(db_name + ": record of variable '" + name + "' at offset " + std::to_string(off) + ", length " +
                       std::to_string(len) + " runs past the end of the file (" + std::to_string(db.size()) +
                       " bytes). Perhaps an incomplete download or corrupt file?");
    const std::string where = db_name + ": variable '" + name + "' (record at offset " + std::to_string(off) + ")";
    const std::string data = decompress_record(std::string_view(db).substr(static_cast<std::size_t>(off), static_cast<std::size_t>(len)), compressed, where);
    Unserializer v(data, where);
    v.header();
    if (v.peek_type() != STRSXP) continue;  // not a character vector
    RObj obj = v.item();
    out.emplace_back(name, std::move(obj.strings));
  }
  return out;
}

std::string janeausten_text(const fs::path& data_dir) {
  std::error_code ec;
  const fs::path rdb = data_dir / "Rdata.rdb", rdx = data_dir / "Rdata.rdx";
  if (!fs::is_regular_file(rdb, ec) || !fs::is_regular_file(rdx, ec))
    throw InputError(data_dir.string() + ": expected janeaustenr's data folder holding Rdata.rdb and Rdata.rdx "
                     "(Debian package r-cran-janeaustenr: /usr/lib/R/site-library/janeaustenr/data)");
  const auto vars = read_rdata_character_vectors(rdb, rdx);
  static const char* const kNovels[] = {"sensesensibility", "prideprejudice", "mansfieldpark",
                                        "emma",             "northangerabbey", "persuasion"};  // publication order
  std::string text;
  for (const char* novel : kNovels) {
    const std::vector<std::string>* lines = nullptr;
    for (const auto& [name, v] : vars)
      if (name == novel) lines = &v;
    if (!lines)
      throw InputError(rdx.string() + ": no character vector '" + novel +
                       "' (expected janeaustenr's six novels: sensesensibility, prideprejudice, mansfieldpark, emma, "
                       "northangerabbey, persuasion)");
    if (!text.empty()) text += "\n\n";
    for (std::size_t i = 0; i < lines->size(); ++i) {
      if (i) text += '\n';
      text += (*lines)[i];
    }
  }
  return text;
}

}  // namespace stretch
