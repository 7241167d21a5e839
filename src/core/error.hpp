// Typed errors. Library code throws these; only the command's main() turns them into messages and exit codes.
//
//   UsageError   a flag or option value the user gave is wrong           (exit 2)
//   InputError   a file the user named is missing, unreadable or malformed (exit 3)
//   ConfigError  a model/training configuration is inconsistent          (exit 4)
//   NumericError the run diverged (NaN/Inf)                               (exit 5)
//   IoError      writing failed (disk full, permissions)                  (exit 6)
//
// Messages name the file or field and say what was expected. Library code never names a command-line flag: it
// names the option or config field in backticks (field_ref("ctx") is "`ctx`"), and the command line renders each
// such name as the flag that sets it (cli/field_flags.hpp: `ctx` -> --ctx, `n_head` -> --heads); a message that
// reaches another caller reads as the field's name.
#pragma once
#include <stdexcept>
#include <string>
#include <string_view>

namespace stretch {

inline std::string field_ref(std::string_view field) { return "`" + std::string(field) + "`"; }

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
  virtual int exit_code() const noexcept { return 1; }
};
struct UsageError : Error {
  using Error::Error;
  int exit_code() const noexcept override { return 2; }
};
struct InputError : Error {
  using Error::Error;
  int exit_code() const noexcept override { return 3; }
};
struct ConfigError : Error {
  using Error::Error;
  int exit_code() const noexcept override { return 4; }
};
struct NumericError : Error {
  using Error::Error;
  int exit_code() const noexcept override { return 5; }
};
struct IoError : Error {
  using Error::Error;
  int exit_code() const noexcept override { return 6; }
};

}  // namespace stretch
