// Reader for R's lazy-load databases (the data/Rdata.rdb + Rdata.rdx pair an R package installs), enough to
// pull character vectors out of them without R. Used for the embedded default corpus: Jane Austen's novels
// from Debian's r-cran-janeaustenr.
//
//   .rdx: R serialization of a list with $variables: named list of (offset, length) integer pairs into the .rdb,
//         and $compressed (TRUE: zlib records; 2/3: records with a type byte). R writes it with saveRDS(), i.e.
//         gzip-compressed (janeaustenr's is); a 4-byte length + zlib stream, or no compression, is accepted too
//   .rdb: at each offset, a record of that length: 4-byte big-endian uncompressed length + zlib stream of an
//         R serialization (format 'X\n', XDR big-endian, version 2 or 3)
// Every length and count is checked against the bytes left; InputError names the file and the problem.
#pragma once
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace stretch {

// All variables of the database that are character vectors, in the .rdx's order: (name, elements).
// NA strings become empty strings.
std::vector<std::pair<std::string, std::vector<std::string>>> read_rdata_character_vectors(
    const std::filesystem::path& rdb, const std::filesystem::path& rdx);

// Jane Austen's six novels from janeaustenr's data folder (the folder holding Rdata.rdb / Rdata.rdx), each
// novel's lines joined by '\n', novels in publication order separated by a blank line.
std::string janeausten_text(const std::filesystem::path& data_dir);

}  // namespace stretch
