// MPI's communicator (comm.hpp), compiled when CMake found MPI (STRETCH_HAVE_MPI). Collectives on
// MPI_COMM_WORLD; the default error handler (MPI_ERRORS_ARE_FATAL) aborts the job on any MPI error.
#ifdef STRETCH_HAVE_MPI
#include <mpi.h>

#include <algorithm>
#include <cstdlib>

#include "core/error.hpp"
#include "distributed/comm.hpp"

namespace stretch {

namespace {

// MPI counts are int: large buffers go in chunks of at most 2^30 elements.
constexpr std::size_t kChunk = std::size_t{1} << 30;

class MpiComm final : public Comm {
 public:
  MpiComm() {
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) {
      int provided = 0;
      // the trainer calls MPI from its main thread only (OpenMP threads never do)
      MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
  }
  ~MpiComm() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void allreduce_sum(float* data, std::size_t n) override {
    for (std::size_t i = 0; i < n; i += kChunk)
      MPI_Allreduce(MPI_IN_PLACE, data + i, static_cast<int>(std::min(kChunk, n - i)), MPI_FLOAT, MPI_SUM,
                    MPI_COMM_WORLD);
  }
  void allreduce_sum(double* data, std::size_t n) override {
    for (std::size_t i = 0; i < n; i += kChunk)
      MPI_Allreduce(MPI_IN_PLACE, data + i, static_cast<int>(std::min(kChunk, n - i)), MPI_DOUBLE, MPI_SUM,
                    MPI_COMM_WORLD);
  }
  void broadcast(float* data, std::size_t n, int root) override {
    for (std::size_t i = 0; i < n; i += kChunk)
      MPI_Bcast(data + i, static_cast<int>(std::min(kChunk, n - i)), MPI_FLOAT, root, MPI_COMM_WORLD);
  }
  bool same_on_all(std::uint64_t value) override {
    std::uint64_t lo = value, hi = value;
    MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
    return lo == hi;
  }
  [[noreturn]] void abort_job(int code) noexcept override {
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);  // MPI_Abort does not return; this satisfies [[noreturn]]
  }

 private:
  int rank_ = 0, size_ = 1;
};

}  // namespace

bool mpi_built() { return true; }

Comm& world_comm() {
  const LaunchInfo info = detect_launch();
  if (info.size <= 1) return single_comm();  // no launcher: MPI is never initialised
  static MpiComm c;
  if (c.size() != info.size)
    throw UsageError("MPI reports " + std::to_string(c.size()) + " ranks but the launcher's " + info.source +
                     " says " + std::to_string(info.size) + " (was stretch started by a different MPI's mpirun?)");
  return c;
}

}  // namespace stretch
#endif
