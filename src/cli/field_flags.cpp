#include "cli/field_flags.hpp"

#include <map>

namespace stretch::cli {

std::string flag_of(std::string_view field) {
  // fields whose flag is not their name: ModelConfig's (model/config.hpp), LoraConfig's, the decoder's and
  // generation's
  static const std::map<std::string, std::string, std::less<>> kFlags = {
      {"n_layer", "--layers"},        {"n_head", "--heads"},           {"n_embd", "--width"},
      {"mlp_hidden", "--mlp"},        {"block_size", "--length"},      {"n_kv_head", "--kv-heads"},
      {"bias", "--no-bias"},          {"slide", "--no-slide"},         {"lora.rank", "--lora"},
      {"lora.alpha", "--lora-alpha"}, {"lora.targets", "--lora-targets"}, {"lora.dropout", "--lora-dropout"},
      {"max_new", "--tokens"}};
  if (auto it = kFlags.find(field); it != kFlags.end()) return it->second;
  std::string f = "--";
  for (char c : field) f += c == '_' ? '-' : c;
  return f;
}

std::string render_fields(std::string_view msg) {
  auto name_char = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.'; };
  std::string out;
  std::size_t i = 0;
  while (i < msg.size()) {
    if (msg[i] == '`') {
      const std::size_t end = msg.find('`', i + 1);
      if (end != std::string_view::npos && end > i + 1 && msg[i + 1] >= 'a' && msg[i + 1] <= 'z') {
        const std::string_view name = msg.substr(i + 1, end - i - 1);
        bool ok = true;
        for (char c : name) ok = ok && name_char(c);
        if (ok) {
          out += flag_of(name);
          i = end + 1;
          continue;
        }
      }
    }
    out += msg[i++];
  }
  return out;
}

}  // namespace stretch::cli
