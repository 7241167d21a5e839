// LoRA adapters as llama.cpp's GGUF adapter files (model/gguf_lora_convert.hpp): applying the file the way llama.cpp
// does (W + (alpha / r) B A, r = the tensor's B columns, one alpha per file) to the base's GGUF tensors gives the
// merged model's GGUF tensors, for llama (one target per tensor, grouped-query attention) and mpt (q, k, v fused in
// attn_qkv, with all or some of them adapted); the tensors pair and are shaped as llama.cpp checks; the metadata is
// llama.cpp's; models without an adapter or without a GGUF layout are refused; a file read back gives the same
// logits, and files llama.cpp would not apply alike are refused naming the key or tensor. (llama.cpp itself loading the files:
// tools/check_llamacpp.py --lora, outside CI.)
#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <string>
#include <tuple>

#include "core/error.hpp"
#include "core/rng.hpp"
#include "io/gguf.hpp"
#include "io/tokenizer.hpp"
#include "model/gguf_convert.hpp"
#include "model/gguf_lora_convert.hpp"
#include "model/lora.hpp"
#include "model/params.hpp"

namespace stretch {
namespace {

ModelConfig config(Arch arch, PositionMethod pm, const char* targets) {
  ModelConfig c;
  c.arch = arch;
  c.vocab_size = 256;  // the byte tokenizer's
  c.n_layer = 2;
  c.n_head = 4;
  c.n_embd = 16;
  c.mlp_hidden = 24;
  c.block_size = 32;
  c.position = pm;
  c.tie_embeddings = false;
  if (arch == Arch::llama) {
    c.bias = false;
    c.n_kv_head = 2;  // k and v narrower than q
  }
  c.lora.rank = 3;
  c.lora.alpha = 5.0;
  c.lora.targets = parse_lora_targets(targets, arch, "test");
  return c;
}

std::unique_ptr<Transformer> adapted(const ModelConfig& c) {
  auto m = std::make_unique<Transformer>(c);
  m->init_weights(3);
  m->init_adapter(4);
  Rng rng(5);
  for (const ParamSpec& s : m->specs())  // B != 0, so the adapter changes the model
    if (s.kind == ParamKind::lora_b)
      for (std::size_t i = 0; i < s.numel(); i++) m->params()[s.offset + i] = 0.3f * rng.normal();
  return m;
}

GgufReader gguf_of(GgufWriter w, const char* name) { return GgufReader::parse(w.serialize(), name); }

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The adapter file applied to the base file as llama.cpp applies it equals the merged model's file; `adapted_names`
// gets the names of the adapted tensors.
void check_against_merge(const Transformer& m, std::set<std::string>& adapted_names) {
  auto tok = make_byte_tokenizer();
  const GgufReader base = gguf_of(model_to_gguf(*base_of(m), *tok), "base.gguf");
  const GgufReader merged = gguf_of(model_to_gguf(*merge_lora(m), *tok), "merged.gguf");
  const GgufReader adapter = gguf_of(lora_to_gguf(m), "adapter.gguf");
  EXPECT_EQ(adapter.get_string("general.type"), "adapter");
  EXPECT_EQ(adapter.get_string("adapter.type"), "lora");
  EXPECT_EQ(adapter.get_string("general.architecture"), base.get_string("general.architecture"));
  const float alpha = adapter.get_f32("adapter.lora.alpha");
  EXPECT_EQ(alpha, static_cast<float>(m.config().lora.alpha));

  for (const GgufTensorInfo& t : adapter.tensors()) {
    EXPECT_TRUE(ends_with(t.name, ".lora_a") || ends_with(t.name, ".lora_b")) << t.name;
    if (!ends_with(t.name, ".lora_a")) continue;
    const std::string w = t.name.substr(0, t.name.size() - 7);
    SCOPED_TRACE(w);
    EXPECT_EQ(t.type, ggml_type::F32);
    const GgufTensorInfo& a = adapter.tensor(w + ".lora_a");
    const GgufTensorInfo& b = adapter.tensor(w + ".lora_b");
    const GgufTensorInfo& bw = base.tensor(w);
    // llama.cpp's checks: W ne (in, out); A ne (in, r); B ne (r, out)
    ASSERT_EQ(a.ne.size(), 2u);
    ASSERT_EQ(b.ne.size(), 2u);
    EXPECT_EQ(a.ne[0], bw.ne[0]);
    EXPECT_EQ(b.ne[1], bw.ne[1]);
    ASSERT_EQ(a.ne[1], b.ne[0]);
    const auto in = static_cast<std::size_t>(a.ne[0]), r = static_cast<std::size_t>(a.ne[1]),
               out = static_cast<std::size_t>(b.ne[1]);
    const std::vector<float> A = adapter.read_f32(w + ".lora_a"), B = adapter.read_f32(w + ".lora_b");
    const std::vector<float> W = base.read_f32(w), M = merged.read_f32(w);
    const double scale = static_cast<double>(alpha) / static_cast<double>(r);
    double worst = 0.0;
    for (std::size_t o = 0; o < out; o++)
      for (std::size_t i = 0; i < in; i++) {
        double d = 0.0;
        for (std::size_t j = 0; j < r; j++) d += static_cast<double>(B[o * r + j]) * A[j * in + i];
        worst = std::max(worst, std::abs(W[o * in + i] + scale * d - M[o * in + i]));
      }
    EXPECT_LT(worst, 2e-6);
    adapted_names.insert(w);
  }
  // every tensor the merge changed has its adapter in the file, and no other
  for (const GgufTensorInfo& t : merged.tensors()) {
    const bool changed = merged.read_f32(t.name) != base.read_f32(t.name);
    EXPECT_EQ(changed, adapted_names.count(t.name) == 1) << t.name;
  }
}

TEST(GgufLora, LlamaAdapterAppliedAsLlamaCppDoesIsTheMergedModel) {
  auto m = adapted(config(Arch::llama, PositionMethod::rope, "q,k,v,o,gate,up,down"));
  std::set<std::string> names;
  check_against_merge(*m, names);
  EXPECT_EQ(names.size(), 14u);  // 7 per layer
  EXPECT_EQ(names.count("blk.1.ffn_gate.weight"), 1u);
  const GgufReader adapter = gguf_of(lora_to_gguf(*m), "adapter.gguf");
  EXPECT_EQ(adapter.tensor("blk.0.attn_k.weight.lora_b").shape_rowmajor, (std::vector<std::int64_t>{8, 3}));
}

TEST(GgufLora, MptFusedQkvHoldsEachAdaptedTargetBlockDiagonally) {
  for (const char* targets : {"q,k,v,o,up,down", "q,v", "k", "o,down"}) {
    SCOPED_TRACE(targets);
    auto m = adapted(config(Arch::gpt, PositionMethod::alibi, targets));
    std::set<std::string> names;
  check_against_merge(*m, names);
    const std::string t = targets;
    EXPECT_EQ(names.count("blk.0.attn_qkv.weight"), t.find_first_of("qkv") != std::string::npos ? 1u : 0u);
    if (t == "q,v") {  // rank 2R, the k rows of B zero
      const GgufReader adapter = gguf_of(lora_to_gguf(*m), "adapter.gguf");
      EXPECT_EQ(adapter.tensor("blk.1.attn_qkv.weight.lora_a").shape_rowmajor, (std::vector<std::int64_t>{6, 16}));
      const std::vector<float> B = adapter.read_f32("blk.1.attn_qkv.weight.lora_b");
      for (std::size_t i = 16 * 6; i < 32 * 6; i++) EXPECT_EQ(B[i], 0.0f);
    }
  }
}

// Read back (lora apply BASE A.gguf): the adapted model's logits are the original's, for llama and for mpt with a
// fused attn_qkv holding some of q, k, v (rank n R there, so the scales are folded into B).
std::vector<float> logits_of(Transformer& m) {
  std::vector<std::int32_t> x;
  for (int t = 0; t < 20; t++) x.push_back((t * 29 + 3) % 256);
  ForwardOptions fo;
  fo.keep_logits = true;
  m.forward(x.data(), nullptr, nullptr, 1, static_cast<int>(x.size()), fo);
  return std::vector<float>(m.logits(), m.logits() + x.size() * 256);
}

TEST(GgufLora, AnAdapterReadBackGivesTheSameLogits) {
  for (auto [arch, pm, targets] : {std::tuple{Arch::llama, PositionMethod::rope, "q,k,v,o,gate,up,down"},
                                   std::tuple{Arch::gpt, PositionMethod::alibi, "q,v,o,down"},
                                   std::tuple{Arch::gpt, PositionMethod::alibi, "up"}}) {
    SCOPED_TRACE(targets);
    auto m = adapted(config(arch, pm, targets));
    auto base = base_of(*m);
    auto back = lora_from_gguf(*base, gguf_of(lora_to_gguf(*m), "a.gguf"));
    const std::vector<float> want = logits_of(*m), got = logits_of(*back), plain = logits_of(*base);
    double worst = 0.0, moved = 0.0;
    for (std::size_t i = 0; i < want.size(); i++) {
      worst = std::max(worst, static_cast<double>(std::abs(want[i] - got[i])));
      moved = std::max(moved, static_cast<double>(std::abs(want[i] - plain[i])));
    }
    EXPECT_LT(worst, 1e-5);
    EXPECT_GT(moved, 1e-2);  // the adapter matters
  }
}

TEST(GgufLora, ReadingRefusesWhatLlamaCppWouldNotApplyAlike) {
  auto m = adapted(config(Arch::llama, PositionMethod::rope, "q,v"));
  auto base = base_of(*m);
  auto expect_refused = [&](GgufWriter w, const std::string& what) {
    try {
      lora_from_gguf(*base, gguf_of(std::move(w), "bad.gguf"));
      ADD_FAILURE() << "expected InputError naming " << what;
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  GgufWriter ok = lora_to_gguf(*m);
  GgufWriter w = ok;
  w.set_string("general.type", "model");
  expect_refused(w, "general.type");
  w = ok;
  w.set_string("general.architecture", "mpt");
  expect_refused(w, "general.architecture");
  w = ok;
  std::vector<float> zeros(16, 0.0f);
  w.add_tensor("blk.0.attn_norm.weight", {16}, ggml_type::F32, zeros.data());
  expect_refused(w, "blk.0.attn_norm.weight");
  // a lone lora_a: its pair is missing
  GgufWriter lone;
  for (const GgufKV& kv : ok.metadata()) lone.set(kv.key, kv.value);
  std::vector<float> a(3 * 16, 0.1f);
  lone.add_tensor("blk.0.attn_q.weight.lora_a", {3, 16}, ggml_type::F32, a.data());
  expect_refused(lone, "blk.0.attn_q.weight.lora_b");
  // the wrong width
  GgufWriter wide;
  for (const GgufKV& kv : ok.metadata()) wide.set(kv.key, kv.value);
  std::vector<float> b(16 * 3, 0.1f), a2(3 * 8, 0.1f);
  wide.add_tensor("blk.0.attn_q.weight.lora_a", {3, 8}, ggml_type::F32, a2.data());
  wide.add_tensor("blk.0.attn_q.weight.lora_b", {16, 3}, ggml_type::F32, b.data());
  expect_refused(wide, "blk.0.attn_q.weight.lora_a");
  // an adapter on a base that already has one
  EXPECT_THROW(lora_from_gguf(*m, gguf_of(lora_to_gguf(*m), "a.gguf")), InputError);
}

TEST(GgufLora, RefusesModelsWithoutAnAdapterOrWithoutAGgufLayout) {
  ModelConfig c = config(Arch::llama, PositionMethod::rope, "q");
  c.lora = LoraConfig{};
  Transformer plain(c);
  EXPECT_THROW(lora_to_gguf(plain), ConfigError);
  auto t5 = adapted(config(Arch::gpt, PositionMethod::t5, "q,v"));
  try {
    lora_to_gguf(*t5);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("position method"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace stretch
