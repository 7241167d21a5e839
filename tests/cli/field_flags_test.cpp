// Library messages name fields in backticks (core/error.hpp's field_ref); the command line shows each as its flag.
#include <gtest/gtest.h>

#include "cli/field_flags.hpp"
#include "core/error.hpp"

namespace stretch::cli {
namespace {

TEST(FieldFlags, AFieldIsItsFlagUnlessTheTableSaysOtherwise) {
  EXPECT_EQ(flag_of("ctx"), "--ctx");
  EXPECT_EQ(flag_of("grad_accum"), "--grad-accum");
  EXPECT_EQ(flag_of("rope_scaling"), "--rope-scaling");
  EXPECT_EQ(flag_of("n_head"), "--heads");
  EXPECT_EQ(flag_of("block_size"), "--length");
  EXPECT_EQ(flag_of("slide"), "--no-slide");
  EXPECT_EQ(flag_of("bias"), "--no-bias");
  EXPECT_EQ(flag_of("lora.rank"), "--lora");
  EXPECT_EQ(flag_of("max_new"), "--tokens");
}

TEST(FieldFlags, MessagesAreRenderedFieldByField) {
  EXPECT_EQ(render_fields(field_ref("trials") + ": expected an integer >= 1, got 0"),
            "--trials: expected an integer >= 1, got 0");
  EXPECT_EQ(render_fields("the context is full: 40 tokens do not fit in `ctx` 32 (raise `ctx`, or `keep` N)"),
            "the context is full: 40 tokens do not fit in --ctx 32 (raise --ctx, or --keep N)");
  EXPECT_EQ(render_fields("`n_head`: 3 does not divide `n_embd` 64"), "--heads: 3 does not divide --width 64");
  // other backticked text, lone backticks and file names stay as they are
  EXPECT_EQ(render_fields("run `stretch info` on each host"), "run `stretch info` on each host");
  EXPECT_EQ(render_fields("a ` b `` c `Upper`"), "a ` b `` c `Upper`");
  EXPECT_EQ(render_fields("config.json: n_head: expected"), "config.json: n_head: expected");
  EXPECT_EQ(render_fields(""), "");
  EXPECT_EQ(render_fields("`x"), "`x");
}

}  // namespace
}  // namespace stretch::cli
