// The all-reduce that data-parallel training does once per step (distributed/comm.hpp), timed alone: a sum of
// float buffers over MPI_COMM_WORLD, in place, from 1 MB to 64 MB (the reference config's gradient slab is about
// 19 MB). Run under mpirun; prints one JSON line per size from rank 0 with the median and best seconds of
// --repeats calls and the algorithm bandwidth (bytes / seconds) and bus bandwidth (2 (N-1) / N * bytes / seconds,
// what each rank's link carries in a ring all-reduce), the figures docs/DISTRIBUTED.md's cost model uses.
//   mpirun -np 2 build/bench_allreduce [--repeats 20] [--mb 1,4,19,64]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "distributed/comm.hpp"

using namespace stretch;

int main(int argc, char** argv) {
  int repeats = 20;
  std::vector<double> sizes_mb = {1, 4, 19, 64};
  for (int i = 1; i < argc; i++) {
    const std::string a = argv[i];
    if (a == "--repeats" && i + 1 < argc) {
      repeats = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--mb" && i + 1 < argc) {
      sizes_mb.clear();
      std::string list = argv[++i];
      for (std::size_t p = 0; p < list.size();) {
        std::size_t q = list.find(',', p);
        if (q == std::string::npos) q = list.size();
        sizes_mb.push_back(std::atof(list.substr(p, q - p).c_str()));
        p = q + 1;
      }
    } else {
      std::fprintf(stderr, "bench_allreduce: unknown argument '%s' (expected --repeats N, --mb LIST)\n", a.c_str());
      return 2;
    }
  }
  try {
    Comm& comm = world_comm();
    const int N = comm.size();
    if (N < 2 && comm.rank() == 0)
      std::fprintf(stderr, "bench_allreduce: one rank (run it under mpirun -np 2 or more); timing the no-op\n");
    for (double mb : sizes_mb) {
      const std::size_t n = static_cast<std::size_t>(mb * 1e6 / sizeof(float));
      std::vector<float> buf(n, 1.0f);
      comm.allreduce_sum(buf.data(), n);  // warm-up: pages, connections
      std::vector<double> t;
      for (int r = 0; r < repeats; r++) {
        std::fill(buf.begin(), buf.end(), 1.0f);
        const auto t0 = std::chrono::steady_clock::now();
        comm.allreduce_sum(buf.data(), n);
        t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        if (buf[0] != static_cast<float>(N)) throw Error("all-reduce gave " + std::to_string(buf[0]));
      }
      double sums[1] = {0};
      comm.allreduce_sum(sums, 1);  // keep the ranks in step between sizes
      std::sort(t.begin(), t.end());
      const double med = t[t.size() / 2], best = t.front();
      const double bytes = static_cast<double>(n) * sizeof(float);
      if (comm.rank() == 0)
        std::printf("{\"bench\":\"allreduce\",\"ranks\":%d,\"mb\":%.1f,\"median_s\":%.6f,\"best_s\":%.6f,"
                    "\"algbw_gb_s\":%.2f,\"busbw_gb_s\":%.2f}\n",
                    N, bytes / 1e6, med, best, bytes / med / 1e9, 2.0 * (N - 1) / N * bytes / med / 1e9);
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_allreduce: %s\n", e.what());
    return e.exit_code();
  }
  return 0;
}
