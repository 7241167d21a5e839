// Byte-pair merging, shared by the BPE tokenizers (GPT-2: lowest merge rank first; llama2.c: highest token
// score first). Repeatedly merges the adjacent pair with the best (lowest) priority, the leftmost on ties,
// until no adjacent pair has a merge. The symbols form a linked list over their initial positions (a merge
// keeps the left node) and candidates sit in a heap; entries made stale by an earlier merge are skipped, so
// the cost is O(n log n) instead of the textbook O(n^2) rescan, with the same result.
#pragma once
#include <cstdint>
#include <optional>
#include <queue>
#include <vector>

namespace stretch {

struct BpeMerge {
  double priority;      // lower merges first
  std::int32_t merged;  // the id of the merged symbol
};

// `find(left, right)` returns the merge of two adjacent ids, or std::nullopt. Replaces ids by the result.
template <class Find>
void bpe_merge(std::vector<std::int32_t>& id, const Find& find) {
  const std::size_t n = id.size();
  if (n < 2) return;
  std::vector<std::int32_t> prev(n), next(n);
  for (std::size_t i = 0; i < n; ++i) {
    prev[i] = static_cast<std::int32_t>(i) - 1;
    next[i] = i + 1 < n ? static_cast<std::int32_t>(i + 1) : -1;
  }
  struct Cand {
    double priority;
    std::int32_t pos, left, right, merged;
    // std::priority_queue pops the largest: the lowest priority, then the leftmost position
    bool operator<(const Cand& o) const { return priority != o.priority ? priority > o.priority : pos > o.pos; }
  };
  std::priority_queue<Cand> heap;
  auto push = [&](std::int32_t p) {
    if (p < 0) return;
    const std::int32_t q = next[static_cast<std::size_t>(p)];
    if (q < 0) return;
    const std::int32_t l = id[static_cast<std::size_t>(p)], r = id[static_cast<std::size_t>(q)];
    if (std::optional<BpeMerge> m = find(l, r)) heap.push({m->priority, p, l, r, m->merged});
  };
  for (std::size_t i = 0; i + 1 < n; ++i) push(static_cast<std::int32_t>(i));
  std::vector<bool> dead(n, false);
  while (!heap.empty()) {
    const Cand c = heap.top();
    heap.pop();
    const auto p = static_cast<std::size_t>(c.pos);
    if (dead[p] || id[p] != c.left) continue;  // stale: the left symbol changed
    const std::int32_t q = next[p];
    if (q < 0 || id[static_cast<std::size_t>(q)] != c.right) continue;  // stale: the right symbol changed
    id[p] = c.merged;
    dead[static_cast<std::size_t>(q)] = true;
    next[p] = next[static_cast<std::size_t>(q)];
    if (next[p] >= 0) prev[static_cast<std::size_t>(next[p])] = c.pos;
    push(prev[p]);
    push(c.pos);
  }
  std::vector<std::int32_t> out;
  out.reserve(n);
  for (std::int32_t p = 0; p >= 0; p = next[static_cast<std::size_t>(p)]) out.push_back(id[static_cast<std::size_t>(p)]);
  id.swap(out);
}

}  // namespace stretch
