// Checks that CLI11 applies to a flag's text as it parses it, so that a flag given explicitly is held to what its
// help and its messages promise (a flag left out keeps its default, which may mean "automatic").
#pragma once
#include <CLI/CLI.hpp>
#include <climits>
#include <string>
#include <utility>
#include <vector>

namespace stretch::cli {

// For unsigned flags (seeds): CLI11 reads "-1" into a std::uint64_t as 2^64-1; a minus sign is refused instead.
inline CLI::Validator non_negative_integer() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        return s.find('-') == std::string::npos ? std::string() : "expected a non-negative integer, got '" + s + "'";
      },
      "UINT", "non-negative integer");
}

// A count that must be at least 1 when given (--stride, --ctx): 0 is not "automatic" once typed.
inline CLI::Validator positive_count() { return CLI::Range(1, INT_MAX); }

// --keep when given: a number of attention-sink tokens, 0 or more (left out: -1, no sinks).
inline CLI::Validator sink_count() { return CLI::Range(0, INT_MAX); }

// --threads when given: 1 to 4096 (left out: OMP_NUM_THREADS, else all cores).
inline CLI::Validator thread_count() { return CLI::Range(1, 4096); }

// An option whose words name an enum's values, parsed once here (library options hold the enum): a word not in
// the table (numbers included) is refused with the words it takes.
template <class E>
CLI::Validator one_of(std::vector<std::pair<std::string, E>> words) {
  std::string list;
  for (const auto& w : words) list += (list.empty() ? "" : " | ") + w.first;
  return CLI::Validator(
      [words, list](std::string& s) -> std::string {
        for (const auto& [w, e] : words)
          if (s == w) {
            s = std::to_string(static_cast<int>(e));  // what CLI11 reads an enum from
            return {};
          }
        return "expected " + list + ", got '" + s + "'";
      },
      "", "");
}

}  // namespace stretch::cli
