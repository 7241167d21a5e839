// Data-parallel communication: the ranks of one training job and the collectives the trainer needs, over
// Open MPI (docs/DISTRIBUTED.md). A process started without a launcher, or by a launcher with one rank, gets
// a single-rank communicator whose collectives are no-ops, so the same binary runs alone or under
// `mpirun -np N`; a build without MPI (CMake found no libopenmpi-dev) refuses a launch with N > 1 by name.
//
// Every rank calls every collective in the same order with the same sizes (MPI's rule); the trainer does.
// Errors inside MPI abort the whole job (MPI_ERRORS_ARE_FATAL): a dead rank makes mpirun stop the others.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

namespace stretch {

// What the launcher's environment says about this process: the world size and this process's rank, and the
// variable they were read from ("" when no launcher: size 1, rank 0): Open MPI's mpirun sets OMPI_COMM_WORLD_SIZE
// and OMPI_COMM_WORLD_RANK; MPICH's and Slurm's PMI launchers PMI_SIZE and PMI_RANK.
struct LaunchInfo {
  int size = 1;
  int rank = 0;
  std::string source;
};
// `getenv` is injectable for tests. Throws UsageError for a value that is not an integer in range.
LaunchInfo detect_launch(const std::function<const char*(const char*)>& getenv);
LaunchInfo detect_launch();

// True when this build has MPI (STRETCH_HAVE_MPI: CMake found MPI and -DSTRETCH_MPI=ON).
bool mpi_built();
// Throws UsageError, saying how to get MPI, when `launch` has several ranks and `built_with_mpi` is false.
void require_mpi_for(const LaunchInfo& launch, bool built_with_mpi);

class Comm {
 public:
  virtual ~Comm() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // In place: every rank ends with the element-wise sum over all ranks (deterministic for a fixed rank count).
  virtual void allreduce_sum(float* data, std::size_t n) = 0;
  virtual void allreduce_sum(double* data, std::size_t n) = 0;
  // Every rank ends with root's values.
  virtual void broadcast(float* data, std::size_t n, int root) = 0;
  // True on every rank exactly when all ranks passed the same value (e.g. a hash of the weights).
  virtual bool same_on_all(std::uint64_t value) = 0;
  // Ends the whole job at once with this exit code (after a rank's error: the others may be blocked in a
  // collective and would otherwise wait forever). Does not return.
  [[noreturn]] virtual void abort_job(int code) noexcept = 0;
};

// The process's communicator, made on first use: MPI's world when launched with N > 1 ranks (MPI is then
// initialised, and finalised at exit), else the single-rank one. Throws UsageError when launched with N > 1
// by a build without MPI.
Comm& world_comm();
// The single-rank communicator (what world_comm() is without a launcher); for tests and library callers.
Comm& single_comm();

}  // namespace stretch
