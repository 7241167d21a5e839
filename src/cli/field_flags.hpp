// Library errors name option and config fields in backticks (core/error.hpp's field_ref: "`ctx`", "`n_head`");
// the command line shows each as the flag that sets it. A field is its flag with '_' for '-' (`grad_accum` ->
// --grad-accum) unless the table in field_flags.cpp says otherwise (`n_head` -> --heads, `slide` -> --no-slide).
#pragma once
#include <string>
#include <string_view>

namespace stretch::cli {

// The flag that sets `field` (without the backticks).
std::string flag_of(std::string_view field);

// msg with every `field` (a lower-case name of letters, digits, '_' and '.') replaced by flag_of(field); other
// backticked text (`stretch info`) is left as it is.
std::string render_fields(std::string_view msg);

}  // namespace stretch::cli
